package nodeagent

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// envInputs is what a container's environment is resolved from. Secret
// values pass through it into the container only: errors and warnings name
// secrets and keys, never values.
type envInputs struct {
	pod *corev1.Pod
	// podIP and hostIP are the pod's addresses (the sandbox exists when the
	// environment is resolved).
	podIP, hostIP string
	// configs holds the ConfigMaps and Secrets the node knows; nil means none.
	configs *configStore
	// node is the node's allocatable CPU and memory, the default of unset
	// limits in resourceFieldRef.
	node nodeResources
	// warn reports a problem that does not stop the container, such as
	// envFrom keys skipped for being invalid variable names.
	warn func(reason, msg string)
}

// nodeResources is what the node can give a container.
type nodeResources struct {
	cpuMilli int64
	memory   int64 // bytes
}

// containerEnv is the container's environment, resolved as kubelet does:
// envFrom sources first, in order (with their prefix; keys that are not
// valid variable names are skipped with a warning), then env in order, each
// `value` expanded with $(VAR) against the variables before it. Service
// links are not emulated. HOSTNAME is the pod's hostname unless set.
func containerEnv(in envInputs, c *corev1.Container) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, ef := range c.EnvFrom {
		kv, err := envFromValues(in, ef)
		if err != nil {
			return nil, fmt.Errorf("container %s: envFrom: %w", c.Name, err)
		}
		keys := make([]string, 0, len(kv))
		for k := range kv {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var invalid []string
		for _, k := range keys {
			name := ef.Prefix + k
			if len(validation.IsEnvVarName(name)) > 0 {
				invalid = append(invalid, name)
				continue
			}
			set(name, kv[k])
		}
		if len(invalid) > 0 && in.warn != nil {
			kind, ref := "configMap", ""
			if ef.ConfigMapRef != nil {
				ref = ef.ConfigMapRef.Name
			} else if ef.SecretRef != nil {
				kind, ref = "secret", ef.SecretRef.Name
			}
			in.warn("InvalidEnvironmentVariableNames", fmt.Sprintf("Keys [%s] from the EnvFrom %s %s/%s were skipped since they are considered invalid environment variable names.",
				strings.Join(invalid, ", "), kind, in.pod.Namespace, ref))
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vars))
			continue
		}
		v, ok, err := envValueFrom(in, c, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("container %s: env %s: %w", c.Name, e.Name, err)
		}
		if ok {
			set(e.Name, v)
		}
	}
	env := make([]string, 0, len(order)+1)
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	if _, ok := vars["HOSTNAME"]; !ok {
		env = append(env, "HOSTNAME="+podHostname(in.pod))
	}
	return env, nil
}

// envFromValues is the data of one envFrom source; a missing optional
// source gives nothing.
func envFromValues(in envInputs, ef corev1.EnvFromSource) (map[string]string, error) {
	switch {
	case ef.ConfigMapRef != nil:
		cm := in.configs.configMap(in.pod.Namespace, ef.ConfigMapRef.Name)
		if cm == nil {
			if isOptional(ef.ConfigMapRef.Optional) {
				return nil, nil
			}
			return nil, fmt.Errorf("configmap %q not found", ef.ConfigMapRef.Name)
		}
		out := make(map[string]string, len(cm.Data)+len(cm.BinaryData))
		for k, v := range cm.BinaryData {
			out[k] = string(v)
		}
		for k, v := range cm.Data {
			out[k] = v
		}
		return out, nil
	case ef.SecretRef != nil:
		s := in.configs.secret(in.pod.Namespace, ef.SecretRef.Name)
		if s == nil {
			if isOptional(ef.SecretRef.Optional) {
				return nil, nil
			}
			return nil, fmt.Errorf("secret %q not found", ef.SecretRef.Name)
		}
		out := make(map[string]string, len(s.Data))
		for k, v := range s.Data {
			out[k] = string(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("neither configMapRef nor secretRef is set")
}

// envValueFrom resolves one valueFrom; ok is false for a missing optional
// reference (the variable is then not set).
func envValueFrom(in envInputs, c *corev1.Container, src *corev1.EnvVarSource) (v string, ok bool, err error) {
	switch {
	case src.FieldRef != nil:
		v, err := fieldRefValue(in.pod, src.FieldRef.FieldPath, in.podIP, in.hostIP)
		return v, err == nil, err
	case src.ResourceFieldRef != nil:
		ref := src.ResourceFieldRef
		target := c
		if ref.ContainerName != "" && ref.ContainerName != c.Name {
			target = findContainer(in.pod, ref.ContainerName)
			if target == nil {
				return "", false, fmt.Errorf("resourceFieldRef: container %q not found", ref.ContainerName)
			}
		}
		v, err := resourceValue(target, ref.Resource, ref.Divisor, in.node)
		return v, err == nil, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm := in.configs.configMap(in.pod.Namespace, ref.Name)
		if cm == nil {
			if isOptional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("configmap %q not found", ref.Name)
		}
		if v, ok := cm.Data[ref.Key]; ok {
			return v, true, nil
		}
		if b, ok := cm.BinaryData[ref.Key]; ok {
			return string(b), true, nil
		}
		if isOptional(ref.Optional) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("key %q not found in configmap %q", ref.Key, ref.Name)
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s := in.configs.secret(in.pod.Namespace, ref.Name)
		if s == nil {
			if isOptional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("secret %q not found", ref.Name)
		}
		if b, ok := s.Data[ref.Key]; ok {
			return string(b), true, nil
		}
		if isOptional(ref.Optional) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("key %q not found in secret %q", ref.Key, ref.Name)
	}
	return "", false, fmt.Errorf("valueFrom has no source")
}

func isOptional(b *bool) bool { return b != nil && *b }

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// fieldRefValue is a pod field as the downward API gives it to env.
func fieldRefValue(pod *corev1.Pod, fieldPath, podIP, hostIP string) (string, error) {
	switch fieldPath {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	}
	if k, ok := subscript(fieldPath, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(fieldPath, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported", fieldPath)
}

// subscript parses `prefix['key']`.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

// formatMap renders labels or annotations as the downward API does: one
// key="value" line per entry, sorted by key, values quoted as Go strings.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// resourceValue is a container resource as the downward API gives it:
// the quantity divided by divisor (default 1), rounded up. Unset limits
// are the node's allocatable (as kubelet merges them); unset requests
// default to the limits set in the spec, else 0.
func resourceValue(c *corev1.Container, name string, divisor resource.Quantity, node nodeResources) (string, error) {
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	limits, requests := c.Resources.Limits, c.Resources.Requests
	get := func(l corev1.ResourceList, r corev1.ResourceName) (resource.Quantity, bool) {
		q, ok := l[r]
		return q, ok
	}
	var q resource.Quantity
	var cpu bool
	switch name {
	case "limits.cpu":
		cpu = true
		var ok bool
		if q, ok = get(limits, corev1.ResourceCPU); !ok {
			q = *resource.NewMilliQuantity(node.cpuMilli, resource.DecimalSI)
		}
	case "limits.memory":
		var ok bool
		if q, ok = get(limits, corev1.ResourceMemory); !ok {
			q = *resource.NewQuantity(node.memory, resource.BinarySI)
		}
	case "requests.cpu":
		cpu = true
		var ok bool
		if q, ok = get(requests, corev1.ResourceCPU); !ok {
			q, _ = get(limits, corev1.ResourceCPU)
		}
	case "requests.memory":
		var ok bool
		if q, ok = get(requests, corev1.ResourceMemory); !ok {
			q, _ = get(limits, corev1.ResourceMemory)
		}
	default:
		return "", fmt.Errorf("resourceFieldRef %q is not supported", name)
	}
	if cpu {
		if divisor.MilliValue() <= 0 {
			return "", fmt.Errorf("resourceFieldRef %s: invalid divisor %s", name, divisor.String())
		}
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	if divisor.Value() <= 0 {
		return "", fmt.Errorf("resourceFieldRef %s: invalid divisor %s", name, divisor.String())
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}
