package nodeagent

import (
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/nodeagent/runtime"
)

// podFiles are the per-pod files mounted into every container.
type podFiles struct {
	hosts, resolv, hostname string
}

// buildSpec maps a pod's container to what the runtime starts, the way
// kubelet maps it: command and args with $(VAR) expansion, env, resources
// as cgroup limits, the security context, and the pod's network and files.
// It also returns the container's variables (for subPathExpr).
func buildSpec(in envInputs, c *corev1.Container, restarts int, netns string, files podFiles, logPath string) (runtime.ContainerSpec, map[string]string, error) {
	pod := in.pod
	env, err := containerEnv(in, c)
	if err != nil {
		return runtime.ContainerSpec{}, nil, err
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	spec := runtime.ContainerSpec{
		PodUID:        string(pod.UID),
		PodName:       pod.Name,
		PodNamespace:  pod.Namespace,
		ContainerName: c.Name,
		RestartCount:  restarts,
		Image:         c.Image,
		Command:       expandAll(c.Command, vars),
		Args:          expandAll(c.Args, vars),
		Env:           env,
		WorkingDir:    c.WorkingDir,
		TTY:           c.TTY,
		Stdin:         c.Stdin,
		NetNSPath:     netns,
		Hostname:      podHostname(pod), // "" on the host's network: the node's, as kubelet
		LogPath:       logPath,
		Resources:     resources(c.Resources),
		Security:      security(pod.Spec.SecurityContext, c.SecurityContext),
	}
	if files.resolv != "" {
		spec.Mounts = append(spec.Mounts, runtime.Mount{Source: files.resolv, Destination: "/etc/resolv.conf", Type: "bind"})
	}
	if !pod.Spec.HostNetwork {
		if files.hosts != "" {
			spec.Mounts = append(spec.Mounts, runtime.Mount{Source: files.hosts, Destination: "/etc/hosts", Type: "bind"})
		}
		if files.hostname != "" {
			spec.Mounts = append(spec.Mounts, runtime.Mount{Source: files.hostname, Destination: "/etc/hostname", Type: "bind"})
		}
	}
	return spec, vars, nil
}

// podHostname is the pod's hostname: spec.hostname, else its name, cut to a
// DNS label as kubelet does; none for a pod on the host's network, which
// has the node's.
func podHostname(pod *corev1.Pod) string {
	if pod.Spec.HostNetwork {
		return ""
	}
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// expand replaces $(VAR) with the value of VAR when VAR is defined, leaves
// it as written otherwise, and turns $$ into $, as Kubernetes does.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func expandAll(in []string, vars map[string]string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expand(s, vars)
	}
	return out
}

// resources maps requests and limits to cgroup settings as kubelet does:
// limits.memory is the memory limit, limits.cpu a CFS quota over a 100 ms
// period, requests.cpu (defaulting to limits.cpu) the CPU shares.
func resources(r corev1.ResourceRequirements) runtime.Resources {
	const period = 100000
	var out runtime.Resources
	if m, ok := r.Limits[corev1.ResourceMemory]; ok {
		out.MemoryLimit = m.Value()
	}
	if c, ok := r.Limits[corev1.ResourceCPU]; ok {
		q := c.MilliValue() * period / 1000
		out.CPUQuota, out.CPUPeriod = max(q, 1000), period
	}
	req, ok := r.Requests[corev1.ResourceCPU]
	if !ok {
		req, ok = r.Limits[corev1.ResourceCPU]
	}
	if ok {
		out.CPUShares = uint64(max(req.MilliValue()*1024/1000, 2))
	} else {
		out.CPUShares = 2 // best effort, as kubelet
	}
	return out
}

func security(pod *corev1.PodSecurityContext, c *corev1.SecurityContext) runtime.Security {
	var s runtime.Security
	if pod != nil {
		s.RunAsUser, s.RunAsGroup = pod.RunAsUser, pod.RunAsGroup
		// The fsGroup is one of every container's groups, as in Kubernetes:
		// the volumes given to it are the containers' to use.
		if pod.FSGroup != nil {
			s.SupplementalGroups = append(s.SupplementalGroups, *pod.FSGroup)
		}
		s.SupplementalGroups = append(s.SupplementalGroups, pod.SupplementalGroups...)
		s.RunAsNonRoot = pod.RunAsNonRoot != nil && *pod.RunAsNonRoot
	}
	if c == nil {
		return s
	}
	if c.RunAsNonRoot != nil {
		s.RunAsNonRoot = *c.RunAsNonRoot
	}
	if c.RunAsUser != nil {
		s.RunAsUser = c.RunAsUser
	}
	if c.RunAsGroup != nil {
		s.RunAsGroup = c.RunAsGroup
	}
	s.ReadOnlyRootFS = c.ReadOnlyRootFilesystem != nil && *c.ReadOnlyRootFilesystem
	s.Privileged = c.Privileged != nil && *c.Privileged
	s.AllowPrivilegeEscalation = c.AllowPrivilegeEscalation
	if c.Capabilities != nil {
		for _, cp := range c.Capabilities.Add {
			s.CapAdd = append(s.CapAdd, string(cp))
		}
		for _, cp := range c.Capabilities.Drop {
			s.CapDrop = append(s.CapDrop, string(cp))
		}
	}
	return s
}

// logPath is where a container's run writes its output: one file per
// restart, as kubelet lays them out.
func logPath(podDir, container string, restarts int) string {
	return filepath.Join(podDir, "logs", container, strconv.Itoa(restarts)+".log")
}
