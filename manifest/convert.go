package manifest

import (
	"encoding/json"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	networkingv1beta1 "k8s.io/api/networking/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	sigsjson "sigs.k8s.io/json"
)

// convertOld converts an old workload or Ingress form to the served version.
// It returns the converted object and a warning that says exactly what to
// change in the manifest.
func convertOld(apiVersion, kind string, old runtime.Object) (runtime.Object, string, error) {
	data, err := json.Marshal(old)
	if err != nil {
		return nil, "", fmt.Errorf("converting %s %s: %w", apiVersion, kind, err)
	}
	prefix := apiVersion + " " + kind + " is deprecated: change apiVersion to "
	switch kind {
	case "Ingress":
		var in networkingv1beta1.Ingress
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, &in); err != nil {
			return nil, "", fmt.Errorf("converting %s %s: %w", apiVersion, kind, err)
		}
		out, changes := convertIngress(&in)
		msg := prefix + "networking.k8s.io/v1"
		if len(changes) > 0 {
			msg += ", " + strings.Join(changes, ", ")
		}
		return out, msg, nil
	}

	var out runtime.Object
	var sel **metav1.LabelSelector
	var tmplLabels map[string]string
	switch kind {
	case "Deployment":
		d := &appsv1.Deployment{}
		out, sel = d, &d.Spec.Selector
		err = sigsjson.UnmarshalCaseSensitivePreserveInts(data, d)
		tmplLabels = d.Spec.Template.Labels
	case "DaemonSet":
		d := &appsv1.DaemonSet{}
		out, sel = d, &d.Spec.Selector
		err = sigsjson.UnmarshalCaseSensitivePreserveInts(data, d)
		tmplLabels = d.Spec.Template.Labels
	case "ReplicaSet":
		d := &appsv1.ReplicaSet{}
		out, sel = d, &d.Spec.Selector
		err = sigsjson.UnmarshalCaseSensitivePreserveInts(data, d)
		tmplLabels = d.Spec.Template.Labels
	case "StatefulSet":
		d := &appsv1.StatefulSet{}
		out, sel = d, &d.Spec.Selector
		err = sigsjson.UnmarshalCaseSensitivePreserveInts(data, d)
		tmplLabels = d.Spec.Template.Labels
	default:
		return nil, "", fmt.Errorf("no conversion for %s %s", apiVersion, kind)
	}
	if err != nil {
		return nil, "", fmt.Errorf("converting %s %s: %w", apiVersion, kind, err)
	}
	msg := prefix + "apps/v1"
	if *sel == nil {
		// The old forms defaulted the selector from the template labels;
		// apps/v1 requires it.
		msg += " and add spec.selector.matchLabels"
		if len(tmplLabels) > 0 {
			m := make(map[string]string, len(tmplLabels))
			for k, v := range tmplLabels {
				m[k] = v
			}
			*sel = &metav1.LabelSelector{MatchLabels: m}
		}
	}
	return out, msg, nil
}

// convertIngress converts a v1beta1 Ingress (extensions or networking) to
// networking.k8s.io/v1 and lists the changes the author should make.
func convertIngress(in *networkingv1beta1.Ingress) (*networkingv1.Ingress, []string) {
	var changes []string
	seen := map[string]bool{}
	note := func(s string) {
		if !seen[s] {
			seen[s] = true
			changes = append(changes, s)
		}
	}
	out := &networkingv1.Ingress{ObjectMeta: in.ObjectMeta}
	out.Spec.IngressClassName = in.Spec.IngressClassName
	if in.Spec.Backend != nil {
		note("rename spec.backend to spec.defaultBackend")
		out.Spec.DefaultBackend = convertBackend(in.Spec.Backend, note)
	}
	for _, t := range in.Spec.TLS {
		out.Spec.TLS = append(out.Spec.TLS, networkingv1.IngressTLS{Hosts: t.Hosts, SecretName: t.SecretName})
	}
	for _, r := range in.Spec.Rules {
		nr := networkingv1.IngressRule{Host: r.Host}
		if r.HTTP != nil {
			nr.HTTP = &networkingv1.HTTPIngressRuleValue{}
			for _, p := range r.HTTP.Paths {
				np := networkingv1.HTTPIngressPath{Path: p.Path}
				if p.PathType != nil {
					pt := networkingv1.PathType(*p.PathType)
					np.PathType = &pt
				} else {
					note("set pathType on every path (ImplementationSpecific keeps the old meaning)")
					pt := networkingv1.PathTypeImplementationSpecific
					np.PathType = &pt
				}
				if b := convertBackend(&p.Backend, note); b != nil {
					np.Backend = *b
				}
				nr.HTTP.Paths = append(nr.HTTP.Paths, np)
			}
		}
		out.Spec.Rules = append(out.Spec.Rules, nr)
	}
	return out, changes
}

func convertBackend(b *networkingv1beta1.IngressBackend, note func(string)) *networkingv1.IngressBackend {
	if b == nil {
		return nil
	}
	out := &networkingv1.IngressBackend{Resource: b.Resource}
	if b.ServiceName != "" || b.ServicePort.IntVal != 0 || b.ServicePort.StrVal != "" {
		note("write backends as service.name and service.port.number (or service.port.name)")
		svc := &networkingv1.IngressServiceBackend{Name: b.ServiceName}
		if b.ServicePort.Type == 1 { // intstr.String
			svc.Port.Name = b.ServicePort.StrVal
		} else {
			svc.Port.Number = b.ServicePort.IntVal
		}
		out.Service = svc
	}
	return out
}
