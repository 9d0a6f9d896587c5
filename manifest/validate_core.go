package manifest

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// podContext says which restart policies a pod spec may have.
type podContext int

const (
	podAny    podContext = iota // a Pod: Always, OnFailure or Never
	podAlways                   // a workload template: Always only
	podJob                      // a Job template: OnFailure or Never, required
)

func validatePodSpec(s *corev1.PodSpec, p *field.Path, ctx podContext) field.ErrorList {
	var errs field.ErrorList

	volumes := map[string]bool{}
	for i, v := range s.Volumes {
		vp := p.Child("volumes").Index(i)
		if v.Name == "" {
			errs = append(errs, field.Required(vp.Child("name"), ""))
		} else {
			for _, msg := range utilvalidation.IsDNS1123Label(v.Name) {
				errs = append(errs, field.Invalid(vp.Child("name"), v.Name, msg))
			}
			if volumes[v.Name] {
				errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
			}
			volumes[v.Name] = true
		}
		errs = append(errs, validateVolumeSource(&v.VolumeSource, vp)...)
	}

	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), "a pod needs at least one container"))
	}
	names := map[string]bool{}
	for i := range s.InitContainers {
		c := &s.InitContainers[i]
		cp := p.Child("initContainers").Index(i)
		errs = append(errs, validateContainer(c, cp, names, volumes)...)
		if c.RestartPolicy != nil && *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			errs = append(errs, field.NotSupported(cp.Child("restartPolicy"), *c.RestartPolicy, []string{"Always"}))
		}
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		cp := p.Child("containers").Index(i)
		errs = append(errs, validateContainer(c, cp, names, volumes)...)
		if c.RestartPolicy != nil {
			errs = append(errs, field.Forbidden(cp.Child("restartPolicy"), "may only be set on init containers"))
		}
	}

	rp := p.Child("restartPolicy")
	switch ctx {
	case podAny:
		switch s.RestartPolicy {
		case "", corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
		default:
			errs = append(errs, field.NotSupported(rp, s.RestartPolicy, []string{"Always", "OnFailure", "Never"}))
		}
	case podAlways:
		switch s.RestartPolicy {
		case "", corev1.RestartPolicyAlways:
		default:
			errs = append(errs, field.NotSupported(rp, s.RestartPolicy, []string{"Always"}))
		}
	case podJob:
		switch s.RestartPolicy {
		case corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
		case "":
			errs = append(errs, field.Required(rp, "a Job's pods must set restartPolicy to OnFailure or Never"))
		default:
			errs = append(errs, field.NotSupported(rp, s.RestartPolicy, []string{"OnFailure", "Never"}))
		}
	}

	switch s.DNSPolicy {
	case "", corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone:
	default:
		errs = append(errs, field.NotSupported(p.Child("dnsPolicy"), s.DNSPolicy, []string{"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"}))
	}
	if s.ServiceAccountName != "" {
		for _, msg := range apivalidation.NameIsDNSSubdomain(s.ServiceAccountName, false) {
			errs = append(errs, field.Invalid(p.Child("serviceAccountName"), s.ServiceAccountName, msg))
		}
	}
	if s.Hostname != "" {
		for _, msg := range utilvalidation.IsDNS1123Label(s.Hostname) {
			errs = append(errs, field.Invalid(p.Child("hostname"), s.Hostname, msg))
		}
	}
	if s.Subdomain != "" {
		for _, msg := range utilvalidation.IsDNS1123Label(s.Subdomain) {
			errs = append(errs, field.Invalid(p.Child("subdomain"), s.Subdomain, msg))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(s.NodeSelector, p.Child("nodeSelector"))...)
	if s.TerminationGracePeriodSeconds != nil && *s.TerminationGracePeriodSeconds < 0 {
		errs = append(errs, field.Invalid(p.Child("terminationGracePeriodSeconds"), *s.TerminationGracePeriodSeconds, "must be greater than or equal to 0"))
	}
	for i, t := range s.Tolerations {
		tp := p.Child("tolerations").Index(i)
		switch t.Operator {
		case "", corev1.TolerationOpEqual:
		case corev1.TolerationOpExists:
			if t.Value != "" {
				errs = append(errs, field.Invalid(tp.Child("operator"), t.Value, "value must be empty when `operator` is 'Exists'"))
			}
		default:
			errs = append(errs, field.NotSupported(tp.Child("operator"), t.Operator, []string{"Equal", "Exists"}))
		}
		switch t.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			errs = append(errs, field.NotSupported(tp.Child("effect"), t.Effect, []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}))
		}
	}
	return errs
}

// validateVolumeSource allows at most one source; none means emptyDir, as
// the API server defaults it.
func validateVolumeSource(v *corev1.VolumeSource, p *field.Path) field.ErrorList {
	n := 0
	for _, set := range []bool{
		v.HostPath != nil, v.EmptyDir != nil, v.GCEPersistentDisk != nil, v.AWSElasticBlockStore != nil,
		v.GitRepo != nil, v.Secret != nil, v.NFS != nil, v.ISCSI != nil, v.Glusterfs != nil,
		v.PersistentVolumeClaim != nil, v.RBD != nil, v.FlexVolume != nil, v.Cinder != nil, v.CephFS != nil,
		v.Flocker != nil, v.DownwardAPI != nil, v.FC != nil, v.AzureFile != nil, v.ConfigMap != nil,
		v.VsphereVolume != nil, v.Quobyte != nil, v.AzureDisk != nil, v.PhotonPersistentDisk != nil,
		v.Projected != nil, v.PortworxVolume != nil, v.ScaleIO != nil, v.StorageOS != nil, v.CSI != nil,
		v.Ephemeral != nil, v.Image != nil,
	} {
		if set {
			n++
		}
	}
	var errs field.ErrorList
	if n > 1 {
		errs = append(errs, field.Forbidden(p, "may not specify more than 1 volume type"))
	}
	if v.ConfigMap != nil && v.ConfigMap.Name == "" {
		errs = append(errs, field.Required(p.Child("configMap", "name"), ""))
	}
	if v.Secret != nil && v.Secret.SecretName == "" {
		errs = append(errs, field.Required(p.Child("secret", "secretName"), ""))
	}
	if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "" {
		errs = append(errs, field.Required(p.Child("persistentVolumeClaim", "claimName"), ""))
	}
	if v.HostPath != nil && v.HostPath.Path == "" {
		errs = append(errs, field.Required(p.Child("hostPath", "path"), ""))
	}
	if v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil && v.EmptyDir.SizeLimit.Sign() < 0 {
		errs = append(errs, field.Invalid(p.Child("emptyDir", "sizeLimit"), v.EmptyDir.SizeLimit.String(), "must be greater than or equal to 0"))
	}
	return errs
}

func validateContainer(c *corev1.Container, p *field.Path, names, volumes map[string]bool) field.ErrorList {
	var errs field.ErrorList
	np := p.Child("name")
	if c.Name == "" {
		errs = append(errs, field.Required(np, ""))
	} else {
		for _, msg := range utilvalidation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(np, c.Name, msg))
		}
		if names[c.Name] {
			errs = append(errs, field.Duplicate(np, c.Name))
		}
		names[c.Name] = true
	}
	if strings.TrimSpace(c.Image) == "" {
		errs = append(errs, field.Required(p.Child("image"), "every container needs an image"))
	} else if c.Image != strings.TrimSpace(c.Image) {
		errs = append(errs, field.Invalid(p.Child("image"), c.Image, "must not have leading or trailing whitespace"))
	}
	switch c.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullNever, corev1.PullIfNotPresent:
	default:
		errs = append(errs, field.NotSupported(p.Child("imagePullPolicy"), c.ImagePullPolicy, []string{"Always", "IfNotPresent", "Never"}))
	}
	portNames := map[string]bool{}
	for i, port := range c.Ports {
		pp := p.Child("ports").Index(i)
		if port.Name != "" {
			for _, msg := range utilvalidation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if portNames[port.Name] {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			portNames[port.Name] = true
		}
		if port.ContainerPort == 0 {
			errs = append(errs, field.Required(pp.Child("containerPort"), ""))
		} else {
			for _, msg := range utilvalidation.IsValidPortNum(int(port.ContainerPort)) {
				errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
			}
		}
		if port.HostPort != 0 {
			for _, msg := range utilvalidation.IsValidPortNum(int(port.HostPort)) {
				errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, msg))
			}
		}
		errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
		if port.HostIP != "" {
			errs = append(errs, utilvalidation.IsValidIPForLegacyField(pp.Child("hostIP"), port.HostIP, false, nil)...)
		}
	}
	for i, e := range c.Env {
		ep := p.Child("env").Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(ep.Child("name"), ""))
		} else {
			for _, msg := range utilvalidation.IsRelaxedEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(ep.Child("name"), e.Name, msg))
			}
		}
		if e.ValueFrom != nil {
			if e.Value != "" {
				errs = append(errs, field.Invalid(ep.Child("valueFrom"), "", "may not be specified when `value` is not empty"))
			}
			n := 0
			for _, set := range []bool{e.ValueFrom.FieldRef != nil, e.ValueFrom.ResourceFieldRef != nil, e.ValueFrom.ConfigMapKeyRef != nil, e.ValueFrom.SecretKeyRef != nil, e.ValueFrom.FileKeyRef != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, field.Invalid(ep.Child("valueFrom"), "", "must specify exactly one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`"))
			}
		}
	}
	errs = append(errs, validateResources(&c.Resources, p.Child("resources"))...)
	mounts := map[string]bool{}
	for i, m := range c.VolumeMounts {
		mp := p.Child("volumeMounts").Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(mp.Child("name"), ""))
		} else if !volumes[m.Name] {
			errs = append(errs, field.NotFound(mp.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(mp.Child("mountPath"), ""))
		} else if mounts[m.MountPath] {
			errs = append(errs, field.Invalid(mp.Child("mountPath"), m.MountPath, "must be unique"))
		}
		mounts[m.MountPath] = true
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
		errs = append(errs, validateProbe(pr.probe, p.Child(pr.name))...)
	}
	return errs
}

func validateProbe(pr *corev1.Probe, p *field.Path) field.ErrorList {
	if pr == nil {
		return nil
	}
	var errs field.ErrorList
	n := 0
	if pr.Exec != nil {
		n++
	}
	if pr.HTTPGet != nil {
		n++
		errs = append(errs, validatePortNumOrName(pr.HTTPGet.Port, p.Child("httpGet", "port"))...)
	}
	if pr.TCPSocket != nil {
		n++
		errs = append(errs, validatePortNumOrName(pr.TCPSocket.Port, p.Child("tcpSocket", "port"))...)
	}
	if pr.GRPC != nil {
		n++
		for _, msg := range utilvalidation.IsValidPortNum(int(pr.GRPC.Port)) {
			errs = append(errs, field.Invalid(p.Child("grpc", "port"), pr.GRPC.Port, msg))
		}
	}
	if n != 1 {
		errs = append(errs, field.Required(p, "must specify exactly one handler: exec, httpGet, tcpSocket or grpc"))
	}
	for _, v := range []struct {
		name string
		v    int32
	}{{"initialDelaySeconds", pr.InitialDelaySeconds}, {"timeoutSeconds", pr.TimeoutSeconds}, {"periodSeconds", pr.PeriodSeconds}, {"successThreshold", pr.SuccessThreshold}, {"failureThreshold", pr.FailureThreshold}} {
		if v.v < 0 {
			errs = append(errs, field.Invalid(p.Child(v.name), v.v, "must be greater than or equal to 0"))
		}
	}
	return errs
}

// validateResources checks resource names, non-negative quantities and
// requests ≤ limits.
func validateResources(r *corev1.ResourceRequirements, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateResourceList(r.Limits, p.Child("limits"))...)
	errs = append(errs, validateResourceList(r.Requests, p.Child("requests"))...)
	for _, name := range sortedResourceNames(r.Requests) {
		req := r.Requests[name]
		lim, ok := r.Limits[name]
		if ok && req.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(p.Child("requests").Key(string(name)), req.String(),
				fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
		}
	}
	return errs
}

func sortedResourceNames(l corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && names[j] < names[j-1]; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
	return names
}

func validateResourceList(l corev1.ResourceList, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sortedResourceNames(l) {
		q := l[name]
		kp := p.Key(string(name))
		for _, msg := range utilvalidation.IsQualifiedName(string(name)) {
			errs = append(errs, field.Invalid(kp, string(name), msg))
		}
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(kp, q.String(), "must be greater than or equal to 0"))
		}
	}
	return errs
}

func validateProtocol(pr corev1.Protocol, p *field.Path) field.ErrorList {
	switch pr {
	case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return nil
	}
	return field.ErrorList{field.NotSupported(p, pr, []string{"TCP", "UDP", "SCTP"})}
}

func validatePortNumOrName(port intstr.IntOrString, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Type == intstr.Int {
		for _, msg := range utilvalidation.IsValidPortNum(int(port.IntVal)) {
			errs = append(errs, field.Invalid(p, port.IntVal, msg))
		}
		return errs
	}
	for _, msg := range utilvalidation.IsValidPortName(port.StrVal) {
		errs = append(errs, field.Invalid(p, port.StrVal, msg))
	}
	return errs
}

// Default NodePort range of the Kubernetes API server.
const (
	nodePortMin = 30000
	nodePortMax = 32767
)

func validateServiceSpec(s *corev1.ServiceSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	typ := s.Type
	switch typ {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), typ, []string{"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"}))
	}
	headless := s.ClusterIP == corev1.ClusterIPNone
	if typ == corev1.ServiceTypeExternalName {
		if s.ExternalName == "" {
			errs = append(errs, field.Required(p.Child("externalName"), "required for type ExternalName"))
		} else {
			for _, msg := range utilvalidation.IsDNS1123Subdomain(strings.TrimSuffix(s.ExternalName, ".")) {
				errs = append(errs, field.Invalid(p.Child("externalName"), s.ExternalName, msg))
			}
		}
	} else if len(s.Ports) == 0 && !headless {
		errs = append(errs, field.Required(p.Child("ports"), ""))
	}
	if s.ClusterIP != "" && !headless {
		errs = append(errs, utilvalidation.IsValidIPForLegacyField(p.Child("clusterIP"), s.ClusterIP, false, nil)...)
	}
	for i, ip := range s.ClusterIPs {
		if ip != corev1.ClusterIPNone {
			errs = append(errs, utilvalidation.IsValidIPForLegacyField(p.Child("clusterIPs").Index(i), ip, false, nil)...)
		}
	}
	if s.LoadBalancerIP != "" {
		errs = append(errs, utilvalidation.IsValidIPForLegacyField(p.Child("loadBalancerIP"), s.LoadBalancerIP, false, nil)...)
	}
	for i, ip := range s.ExternalIPs {
		errs = append(errs, utilvalidation.IsValidIPForLegacyField(p.Child("externalIPs").Index(i), ip, false, nil)...)
	}
	for i, c := range s.LoadBalancerSourceRanges {
		errs = append(errs, utilvalidation.IsValidCIDRForLegacyField(p.Child("loadBalancerSourceRanges").Index(i), strings.TrimSpace(c), false, nil)...)
	}
	errs = append(errs, metav1validation.ValidateLabels(s.Selector, p.Child("selector"))...)
	switch s.SessionAffinity {
	case "", corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP:
	default:
		errs = append(errs, field.NotSupported(p.Child("sessionAffinity"), s.SessionAffinity, []string{"ClientIP", "None"}))
	}
	if s.ExternalTrafficPolicy != "" {
		if typ != corev1.ServiceTypeNodePort && typ != corev1.ServiceTypeLoadBalancer {
			errs = append(errs, field.Invalid(p.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy, "may only be set for NodePort and LoadBalancer services"))
		} else if s.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster && s.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			errs = append(errs, field.NotSupported(p.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy, []string{"Cluster", "Local"}))
		}
	}

	names := map[string]bool{}
	type pp struct {
		port  int32
		proto corev1.Protocol
	}
	seen := map[pp]bool{}
	for i, port := range s.Ports {
		ip := p.Child("ports").Index(i)
		np := ip.Child("name")
		if port.Name == "" {
			if len(s.Ports) > 1 {
				errs = append(errs, field.Required(np, "a name is required when a service has more than one port"))
			}
		} else {
			for _, msg := range utilvalidation.IsDNS1123Label(port.Name) {
				errs = append(errs, field.Invalid(np, port.Name, msg))
			}
			if names[port.Name] {
				errs = append(errs, field.Duplicate(np, port.Name))
			}
			names[port.Name] = true
		}
		for _, msg := range utilvalidation.IsValidPortNum(int(port.Port)) {
			errs = append(errs, field.Invalid(ip.Child("port"), port.Port, msg))
		}
		errs = append(errs, validateProtocol(port.Protocol, ip.Child("protocol"))...)
		proto := port.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if seen[pp{port.Port, proto}] {
			errs = append(errs, field.Duplicate(ip, fmt.Sprintf("%d/%s", port.Port, proto)))
		}
		seen[pp{port.Port, proto}] = true
		if port.TargetPort.Type == intstr.Int && port.TargetPort.IntVal == 0 {
			// unset: defaults to port
		} else {
			errs = append(errs, validatePortNumOrName(port.TargetPort, ip.Child("targetPort"))...)
		}
		if port.NodePort != 0 {
			if typ != corev1.ServiceTypeNodePort && typ != corev1.ServiceTypeLoadBalancer {
				errs = append(errs, field.Forbidden(ip.Child("nodePort"), "may not be used when `type` is '"+string(typeOrDefault(typ))+"'"))
			} else if port.NodePort < nodePortMin || port.NodePort > nodePortMax {
				errs = append(errs, field.Invalid(ip.Child("nodePort"), port.NodePort, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", nodePortMin, nodePortMax)))
			}
		}
	}
	return errs
}

func typeOrDefault(t corev1.ServiceType) corev1.ServiceType {
	if t == "" {
		return corev1.ServiceTypeClusterIP
	}
	return t
}

func validateIngressSpec(s *networkingv1.IngressSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.DefaultBackend == nil && len(s.Rules) == 0 {
		errs = append(errs, field.Invalid(p.Child("rules"), "", "either `defaultBackend` or `rules` must be specified"))
	}
	if s.DefaultBackend != nil {
		errs = append(errs, validateIngressBackend(s.DefaultBackend, p.Child("defaultBackend"))...)
	}
	if s.IngressClassName != nil {
		for _, msg := range apivalidation.NameIsDNSSubdomain(*s.IngressClassName, false) {
			errs = append(errs, field.Invalid(p.Child("ingressClassName"), *s.IngressClassName, msg))
		}
	}
	for i, t := range s.TLS {
		for j, h := range t.Hosts {
			errs = append(errs, validateHost(h, p.Child("tls").Index(i).Child("hosts").Index(j))...)
		}
		if t.SecretName != "" {
			for _, msg := range apivalidation.NameIsDNSSubdomain(t.SecretName, false) {
				errs = append(errs, field.Invalid(p.Child("tls").Index(i).Child("secretName"), t.SecretName, msg))
			}
		}
	}
	for i, r := range s.Rules {
		rp := p.Child("rules").Index(i)
		if r.Host != "" {
			errs = append(errs, validateHost(r.Host, rp.Child("host"))...)
		}
		if r.HTTP == nil {
			continue
		}
		if len(r.HTTP.Paths) == 0 {
			errs = append(errs, field.Required(rp.Child("http", "paths"), ""))
		}
		for j, hp := range r.HTTP.Paths {
			pp := rp.Child("http", "paths").Index(j)
			if hp.PathType == nil {
				errs = append(errs, field.Required(pp.Child("pathType"), "pathType must be specified"))
			} else {
				switch *hp.PathType {
				case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
					if !strings.HasPrefix(hp.Path, "/") {
						errs = append(errs, field.Invalid(pp.Child("path"), hp.Path, "must be an absolute path"))
					}
				case networkingv1.PathTypeImplementationSpecific:
					if hp.Path != "" && !strings.HasPrefix(hp.Path, "/") {
						errs = append(errs, field.Invalid(pp.Child("path"), hp.Path, "must be an absolute path"))
					}
				default:
					errs = append(errs, field.NotSupported(pp.Child("pathType"), *hp.PathType, []string{"Exact", "Prefix", "ImplementationSpecific"}))
				}
			}
			errs = append(errs, validateIngressBackend(&hp.Backend, pp.Child("backend"))...)
		}
	}
	return errs
}

func validateHost(h string, p *field.Path) field.ErrorList {
	var msgs []string
	if strings.HasPrefix(h, "*.") {
		msgs = utilvalidation.IsWildcardDNS1123Subdomain(h)
	} else {
		msgs = utilvalidation.IsDNS1123Subdomain(h)
	}
	var errs field.ErrorList
	for _, msg := range msgs {
		errs = append(errs, field.Invalid(p, h, msg))
	}
	return errs
}

func validateIngressBackend(b *networkingv1.IngressBackend, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case b.Service != nil && b.Resource != nil:
		errs = append(errs, field.Invalid(p, "", "cannot set both service and resource backends"))
	case b.Service != nil:
		sp := p.Child("service")
		if b.Service.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), ""))
		} else {
			for _, msg := range apivalidation.NameIsDNS1035Label(b.Service.Name, false) {
				errs = append(errs, field.Invalid(sp.Child("name"), b.Service.Name, msg))
			}
		}
		port := b.Service.Port
		switch {
		case port.Name != "" && port.Number != 0:
			errs = append(errs, field.Invalid(sp.Child("port"), "", "cannot set both port name & port number"))
		case port.Name != "":
			for _, msg := range utilvalidation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(sp.Child("port", "name"), port.Name, msg))
			}
		case port.Number != 0:
			for _, msg := range utilvalidation.IsValidPortNum(int(port.Number)) {
				errs = append(errs, field.Invalid(sp.Child("port", "number"), port.Number, msg))
			}
		default:
			errs = append(errs, field.Required(sp.Child("port"), "port name or number is required"))
		}
	case b.Resource != nil:
		if b.Resource.Kind == "" || b.Resource.Name == "" {
			errs = append(errs, field.Required(p.Child("resource"), "kind and name are required"))
		}
	default:
		errs = append(errs, field.Required(p, "a service or resource backend is required"))
	}
	return errs
}

// maxConfigSize is the most data a ConfigMap or Secret may hold (etcd's
// request limit, as the API server enforces).
const maxConfigSize = 1 << 20

func validateConfigMap(c *corev1.ConfigMap) field.ErrorList {
	var errs field.ErrorList
	size := 0
	for _, k := range sortedKeys(c.Data) {
		for _, msg := range utilvalidation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, msg))
		}
		size += len(k) + len(c.Data[k])
	}
	for _, k := range sortedKeys(c.BinaryData) {
		for _, msg := range utilvalidation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(field.NewPath("binaryData").Key(k), k, msg))
		}
		if _, ok := c.Data[k]; ok {
			errs = append(errs, field.Invalid(field.NewPath("binaryData").Key(k), k, "duplicate of key present in data"))
		}
		size += len(k) + len(c.BinaryData[k])
	}
	if size > maxConfigSize {
		errs = append(errs, field.TooLong(field.NewPath(""), "", maxConfigSize))
	}
	return errs
}

// validateSecret checks keys and the keys a type requires. Values are never
// put into errors.
func validateSecret(s *corev1.Secret) field.ErrorList {
	var errs field.ErrorList
	size := 0
	for _, k := range sortedKeys(s.Data) {
		for _, msg := range utilvalidation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, msg))
		}
		size += len(s.Data[k])
	}
	for _, k := range sortedKeys(s.StringData) {
		for _, msg := range utilvalidation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(field.NewPath("stringData").Key(k), k, msg))
		}
		size += len(s.StringData[k])
	}
	if size > maxConfigSize {
		errs = append(errs, field.TooLong(field.NewPath("data"), "", maxConfigSize))
	}
	has := func(k string) bool {
		_, a := s.Data[k]
		_, b := s.StringData[k]
		return a || b
	}
	need := func(keys ...string) {
		for _, k := range keys {
			if !has(k) {
				errs = append(errs, field.Required(field.NewPath("data").Key(k), "required for a "+string(s.Type)+" Secret"))
			}
		}
	}
	switch s.Type {
	case corev1.SecretTypeTLS:
		need(corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	case corev1.SecretTypeDockerConfigJson:
		need(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeDockercfg:
		need(corev1.DockerConfigKey)
	case corev1.SecretTypeBasicAuth:
		if !has(corev1.BasicAuthUsernameKey) && !has(corev1.BasicAuthPasswordKey) {
			errs = append(errs, field.Required(field.NewPath("data").Key(corev1.BasicAuthUsernameKey), "username or password is required for a basic-auth Secret"))
		}
	case corev1.SecretTypeSSHAuth:
		need(corev1.SSHAuthPrivateKey)
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func validateAccessModes(modes []corev1.PersistentVolumeAccessMode, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(modes) == 0 {
		errs = append(errs, field.Required(p, "at least 1 access mode is required"))
	}
	for i, m := range modes {
		switch m {
		case corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod:
		default:
			errs = append(errs, field.NotSupported(p.Index(i), m, []string{"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"}))
		}
	}
	return errs
}

func validatePVCSpec(s *corev1.PersistentVolumeClaimSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateAccessModes(s.AccessModes, p.Child("accessModes"))...)
	rp := p.Child("resources", "requests")
	if q, ok := s.Resources.Requests[corev1.ResourceStorage]; !ok {
		errs = append(errs, field.Required(rp.Key(string(corev1.ResourceStorage)), ""))
	} else if q.Sign() <= 0 {
		errs = append(errs, field.Invalid(rp.Key(string(corev1.ResourceStorage)), q.String(), "must be greater than zero"))
	}
	errs = append(errs, validateResourceList(s.Resources.Requests, rp)...)
	errs = append(errs, validateResourceList(s.Resources.Limits, p.Child("resources", "limits"))...)
	if s.Selector != nil {
		errs = append(errs, validateSelector(s.Selector, p.Child("selector"))...)
	}
	if s.VolumeMode != nil && *s.VolumeMode != corev1.PersistentVolumeBlock && *s.VolumeMode != corev1.PersistentVolumeFilesystem {
		errs = append(errs, field.NotSupported(p.Child("volumeMode"), *s.VolumeMode, []string{"Block", "Filesystem"}))
	}
	return errs
}

func validatePVSpec(s *corev1.PersistentVolumeSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateAccessModes(s.AccessModes, p.Child("accessModes"))...)
	cp := p.Child("capacity")
	if q, ok := s.Capacity[corev1.ResourceStorage]; !ok {
		errs = append(errs, field.Required(cp.Key(string(corev1.ResourceStorage)), ""))
	} else if q.Sign() <= 0 {
		errs = append(errs, field.Invalid(cp.Key(string(corev1.ResourceStorage)), q.String(), "must be greater than zero"))
	}
	errs = append(errs, validateResourceList(s.Capacity, cp)...)
	v := s.PersistentVolumeSource
	n := 0
	for _, set := range []bool{
		v.GCEPersistentDisk != nil, v.AWSElasticBlockStore != nil, v.HostPath != nil, v.Glusterfs != nil,
		v.NFS != nil, v.RBD != nil, v.ISCSI != nil, v.Cinder != nil, v.CephFS != nil, v.FC != nil,
		v.Flocker != nil, v.FlexVolume != nil, v.AzureFile != nil, v.VsphereVolume != nil, v.Quobyte != nil,
		v.AzureDisk != nil, v.PhotonPersistentDisk != nil, v.PortworxVolume != nil, v.ScaleIO != nil,
		v.Local != nil, v.StorageOS != nil, v.CSI != nil,
	} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(p, "must specify a volume type"))
	case n > 1:
		errs = append(errs, field.Forbidden(p, "may not specify more than 1 volume type"))
	}
	switch s.PersistentVolumeReclaimPolicy {
	case "", corev1.PersistentVolumeReclaimRetain, corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRecycle:
	default:
		errs = append(errs, field.NotSupported(p.Child("persistentVolumeReclaimPolicy"), s.PersistentVolumeReclaimPolicy, []string{"Delete", "Recycle", "Retain"}))
	}
	return errs
}

func validateStorageClass(sc *storagev1.StorageClass) field.ErrorList {
	var errs field.ErrorList
	if sc.Provisioner == "" {
		errs = append(errs, field.Required(field.NewPath("provisioner"), ""))
	} else {
		for _, msg := range utilvalidation.IsQualifiedName(strings.ToLower(sc.Provisioner)) {
			errs = append(errs, field.Invalid(field.NewPath("provisioner"), sc.Provisioner, msg))
		}
	}
	if sc.ReclaimPolicy != nil {
		switch *sc.ReclaimPolicy {
		case corev1.PersistentVolumeReclaimRetain, corev1.PersistentVolumeReclaimDelete:
		default:
			errs = append(errs, field.NotSupported(field.NewPath("reclaimPolicy"), *sc.ReclaimPolicy, []string{"Delete", "Retain"}))
		}
	}
	if sc.VolumeBindingMode != nil {
		switch *sc.VolumeBindingMode {
		case storagev1.VolumeBindingImmediate, storagev1.VolumeBindingWaitForFirstConsumer:
		default:
			errs = append(errs, field.NotSupported(field.NewPath("volumeBindingMode"), *sc.VolumeBindingMode, []string{"Immediate", "WaitForFirstConsumer"}))
		}
	}
	return errs
}
