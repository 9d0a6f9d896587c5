package nodeagent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/nodeagent/runtime"
)

func TestResources(t *testing.T) {
	q := resource.MustParse
	for _, tc := range []struct {
		name string
		in   corev1.ResourceRequirements
		want runtime.Resources
	}{
		{"none is best effort", corev1.ResourceRequirements{}, runtime.Resources{CPUShares: 2}},
		{"memory limit in bytes", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceMemory: q("64Mi")},
		}, runtime.Resources{MemoryLimit: 64 << 20, CPUShares: 2}},
		{"memory limit in decimal units", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceMemory: q("1G")},
		}, runtime.Resources{MemoryLimit: 1_000_000_000, CPUShares: 2}},
		{"cpu limit is a quota over 100 ms, and the request defaults to it", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceCPU: q("250m")},
		}, runtime.Resources{CPUQuota: 25000, CPUPeriod: 100000, CPUShares: 256}},
		{"two cpus", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceCPU: q("2")},
		}, runtime.Resources{CPUQuota: 200000, CPUPeriod: 100000, CPUShares: 2048}},
		{"a request of its own wins over the limit for shares", corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("100m")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("500m")},
		}, runtime.Resources{CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 102}},
		{"request only: shares, no quota", corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("1")},
		}, runtime.Resources{CPUShares: 1024}},
		{"tiny limit: minimum quota 1 ms and minimum shares 2", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceCPU: q("1m")},
		}, runtime.Resources{CPUQuota: 1000, CPUPeriod: 100000, CPUShares: 2}},
		{"cpu and memory", corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("250m"), corev1.ResourceMemory: q("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("128Mi")},
		}, runtime.Resources{MemoryLimit: 128 << 20, CPUQuota: 100000, CPUPeriod: 100000, CPUShares: 256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, resources(tc.in)); d != "" {
				t.Errorf("resources (-want +got):\n%s", d)
			}
		})
	}
}

func TestSecurity(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *corev1.PodSecurityContext
		c    *corev1.SecurityContext
		want runtime.Security
	}{
		{"none", nil, nil, runtime.Security{}},
		{"pod level only", &corev1.PodSecurityContext{RunAsUser: ptrTo[int64](1000), RunAsGroup: ptrTo[int64](2000), FSGroup: ptrTo[int64](3000)}, nil,
			runtime.Security{RunAsUser: ptrTo[int64](1000), RunAsGroup: ptrTo[int64](2000), SupplementalGroups: []int64{3000}}},
		{"fsGroup first, then supplementalGroups", &corev1.PodSecurityContext{FSGroup: ptrTo[int64](3000), SupplementalGroups: []int64{4000, 5000}}, nil,
			runtime.Security{SupplementalGroups: []int64{3000, 4000, 5000}}},
		{"supplementalGroups alone", &corev1.PodSecurityContext{SupplementalGroups: []int64{4000}}, &corev1.SecurityContext{RunAsUser: ptrTo[int64](1)},
			runtime.Security{RunAsUser: ptrTo[int64](1), SupplementalGroups: []int64{4000}}},
		{"runAsNonRoot from the pod", &corev1.PodSecurityContext{RunAsNonRoot: ptrTo(true)}, &corev1.SecurityContext{RunAsUser: ptrTo[int64](5)},
			runtime.Security{RunAsUser: ptrTo[int64](5), RunAsNonRoot: true}},
		{"runAsNonRoot: the container's wins", &corev1.PodSecurityContext{RunAsNonRoot: ptrTo(true)}, &corev1.SecurityContext{RunAsNonRoot: ptrTo(false)},
			runtime.Security{}},
		{"container wins", &corev1.PodSecurityContext{RunAsUser: ptrTo[int64](1000), RunAsGroup: ptrTo[int64](2000)},
			&corev1.SecurityContext{RunAsUser: ptrTo[int64](1), RunAsGroup: ptrTo[int64](2)},
			runtime.Security{RunAsUser: ptrTo[int64](1), RunAsGroup: ptrTo[int64](2)}},
		{"container sets the user, the pod's group stays", &corev1.PodSecurityContext{RunAsUser: ptrTo[int64](1000), RunAsGroup: ptrTo[int64](2000)},
			&corev1.SecurityContext{RunAsUser: ptrTo[int64](0)},
			runtime.Security{RunAsUser: ptrTo[int64](0), RunAsGroup: ptrTo[int64](2000)}},
		{"container only", nil, &corev1.SecurityContext{RunAsGroup: ptrTo[int64](5)},
			runtime.Security{RunAsGroup: ptrTo[int64](5)}},
		{"capabilities", nil, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Add: []corev1.Capability{"NET_ADMIN", "CAP_SYS_TIME"}, Drop: []corev1.Capability{"ALL"}}},
			runtime.Security{CapAdd: []string{"NET_ADMIN", "CAP_SYS_TIME"}, CapDrop: []string{"ALL"}}},
		{"privileged, read-only root, no escalation", &corev1.PodSecurityContext{RunAsUser: ptrTo[int64](7)}, &corev1.SecurityContext{
			Privileged: ptrTo(true), ReadOnlyRootFilesystem: ptrTo(true), AllowPrivilegeEscalation: ptrTo(false)},
			runtime.Security{RunAsUser: ptrTo[int64](7), Privileged: true, ReadOnlyRootFS: true, AllowPrivilegeEscalation: ptrTo(false)}},
		{"explicit false", nil, &corev1.SecurityContext{Privileged: ptrTo(false), ReadOnlyRootFilesystem: ptrTo(false)},
			runtime.Security{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, security(tc.pod, tc.c)); d != "" {
				t.Errorf("security (-want +got):\n%s", d)
			}
		})
	}
}

func TestSameButStatus(t *testing.T) {
	base := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u1", Labels: map[string]string{"app": "a"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	now := metav1.Now()
	tests := []struct {
		name   string
		change func(*corev1.Pod)
		want   bool
	}{
		{"status only (the node's own report handed back)", func(p *corev1.Pod) { p.Status.Phase, p.Status.PodIP = corev1.PodRunning, "10.0.0.2" }, true},
		{"image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "busybox:2" }, false},
		{"being deleted", func(p *corev1.Pod) { p.DeletionTimestamp = &now }, false},
		{"label (the downward API shows it)", func(p *corev1.Pod) { p.Labels["app"] = "b" }, false},
		{"annotation", func(p *corev1.Pod) { p.Annotations = map[string]string{"k": "v"} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base.DeepCopy()
			tt.change(p)
			if got := sameButStatus(base, p); got != tt.want {
				t.Errorf("sameButStatus = %t, want %t", got, tt.want)
			}
		})
	}
}
