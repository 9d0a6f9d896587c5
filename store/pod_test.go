package store

import (
	"encoding/json"
	"math/rand"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	"k8s.io/apimachinery/pkg/api/resource"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
)

// richPod has something in every part of a pod the API serves, status
// above all: what real agents report and what they rarely do.
func richPod() *corev1.Pod {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Date(2026, 3, 1, 10, 0, s, 0, time.UTC)) }
	t1, t2 := at(1), at(2)
	yes := true
	grace := int64(5)
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d4b9-x2k4q", Namespace: "shop", UID: types.UID("0b5e2a8c-1f7e-4a5e-9b51-6f1c0e4b2d11"),
			Labels: map[string]string{"app": "web", "pod-template-hash": "7d4b9"}, Annotations: map[string]string{"a": "b"},
			CreationTimestamp: at(0), Generation: 2, Finalizers: []string{"f"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9", Controller: &yes}},
		},
		Spec: corev1.PodSpec{
			NodeName: "n1", Hostname: "web", Subdomain: "svc", TerminationGracePeriodSeconds: &grace,
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
			Containers: []corev1.Container{{Name: "c", Image: "web:v1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}},
			NodeSelector: map[string]string{"disk": "ssd"},
			Tolerations:  []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, Message: "m", Reason: "r", NominatedNodeName: "n2",
			HostIP: "10.1.0.1", HostIPs: []corev1.HostIP{{IP: "10.1.0.1"}},
			PodIP: "10.244.1.7", PodIPs: []corev1.PodIP{{IP: "10.244.1.7"}, {IP: "fd00::7"}},
			StartTime: &t1, QOSClass: corev1.PodQOSBurstable, ObservedGeneration: 2,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: t1},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: t1},
				{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "c not ready", LastTransitionTime: t2, LastProbeTime: t2},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t2.Add(123456789))},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t1},
			},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", Image: "busybox", ImageID: "sha256:aa", ContainerID: "containerd://1",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: t1, FinishedAt: t2}}}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "c", Image: "web:v1", ImageID: "sha256:bb", ContainerID: "containerd://2", Ready: true, Started: &yes, RestartCount: 3,
					State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t2}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Signal: 9, Reason: "OOMKilled", Message: "oom", StartedAt: t1, FinishedAt: t2, ContainerID: "containerd://0"}},
					AllocatedResources:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
					VolumeMounts:         []corev1.VolumeMountStatus{{Name: "v", MountPath: "/v", ReadOnly: true}},
				},
				{Name: "side", Image: "side:v1", RestartCount: 1, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 10s"}}},
			},
		},
	}
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPodRoundTrip: the row of a pod serves the pod it was given, field for
// field as the API answers (JSON), and keeps what the controllers read
// exactly.
func TestPodRoundTrip(t *testing.T) {
	p := richPod()
	want := asJSON(t, p)
	row := NewPod(p.DeepCopy())
	if diff := cmp.Diff(want, asJSON(t, row.Object())); diff != "" {
		t.Errorf("pod served from its row (-given +served):\n%s", diff)
	}
	ready := p.Status.Conditions[3].LastTransitionTime.Time
	if row.Key != "shop/web-7d4b9-x2k4q" || row.NodeName != "n1" || row.Phase != "Running" || row.PodIP != "10.244.1.7" ||
		!row.Ready || !row.ReadySince.Time().Equal(ready) || row.Restarts != 3 || row.UID != p.UID || !row.Created.Time().Equal(p.CreationTimestamp.Time) {
		t.Errorf("row fields: %+v", row)
	}
	// The Ready condition's time is exact in memory (minReadySeconds counts
	// from it), not only to the second as encoded.
	for _, c := range row.Status().Conditions {
		if c.Type == corev1.PodReady && !c.LastTransitionTime.Time.Equal(ready) {
			t.Errorf("Ready since %v, want %v", c.LastTransitionTime, ready)
		}
	}

	// A pod as an agent's report arrives (decoded from JSON) comes back equal.
	var decoded corev1.Pod
	if err := json.Unmarshal([]byte(want), &decoded); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&decoded, NewPod(decoded.DeepCopy()).Object()); diff != "" {
		t.Errorf("decoded pod served from its row (-given +served):\n%s", diff)
	}
}

// agentPod is a pod as Keelson's agent reports a running one: the shapes
// the status encoding keeps short.
func agentPod() *corev1.Pod {
	p := richPod()
	t1, t2 := p.Status.Conditions[0].LastTransitionTime, p.Status.Conditions[2].LastTransitionTime
	yes := true
	p.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, HostIP: "10.1.0.1", HostIPs: []corev1.HostIP{{IP: "10.1.0.1"}},
		PodIP: "10.244.1.7", PodIPs: []corev1.PodIP{{IP: "10.244.1.7"}}, StartTime: &t1, QOSClass: corev1.PodQOSBurstable,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: t1},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: t1},
			{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", LastTransitionTime: t2},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", LastTransitionTime: t2},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t1},
		},
		InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", Image: "busybox", ImageID: "sha256:aa", ContainerID: "containerd://1",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: t1, FinishedAt: t2}}}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Image: "web:v1", ImageID: "sha256:bb", ContainerID: "containerd://2", Started: &yes,
			RestartCount: 2, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}},
	}
	return p
}

// simulatedPod is a pod as the --simulate agent reports it, with its own
// IPs: what BenchmarkControllerScale holds 100,000 of.
func simulatedPod() *corev1.Pod {
	p := richPod()
	now := metav1.NewTime(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &now, HostIP: "10.1.0.1", PodIP: "10.244.1.7",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Image: "web:v1", Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
	}
	return p
}

// TestPodStatusShapes: the statuses agents report come back whole from
// their short form, and short; so do the controller's own (a pod just
// bound, one that cannot be).
func TestPodStatusShapes(t *testing.T) {
	bound := richPod()
	bound.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))}}}
	unschedulable := richPod()
	unschedulable.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
		Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes available: 3 insufficient cpu"}}}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		maxSize int
	}{
		{"agent", agentPod(), 230},
		{"simulated", simulatedPod(), 96},
		{"bound", bound, 16},
		{"unschedulable", unschedulable, 110},
		{"pending", &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row := NewPod(tc.pod.DeepCopy())
			if diff := cmp.Diff(asJSON(t, tc.pod), asJSON(t, row.Object())); diff != "" {
				t.Errorf("pod served from its row (-given +served):\n%s", diff)
			}
			if len(row.status) > tc.maxSize {
				t.Errorf("status takes %d bytes, want at most %d", len(row.status), tc.maxSize)
			}
		})
	}
}

// TestPodRoundTripFuzz: pods filled at random, as Kubernetes tests its own
// encodings, serve the same JSON from their rows; half of them with their
// status in the shapes agents report, which the encoding keeps short.
func TestPodRoundTripFuzz(t *testing.T) {
	f := fuzzer.FuzzerFor(metafuzzer.Funcs, rand.NewSource(1), serializer.NewCodecFactory(runtime.NewScheme()))
	f.NilChance(0.3).NumElements(0, 3)
	r := rand.New(rand.NewSource(2))
	for i := range 300 {
		var p corev1.Pod
		f.Fill(&p)
		if i%2 == 1 {
			agentShapes(r, &p)
		}
		want := normalJSON(t, &p)
		if diff := cmp.Diff(want, normalJSON(t, NewPod(&p).Object())); diff != "" {
			t.Fatalf("pod %d served from its row (-given +served):\n%s", i, diff)
		}
	}
}

// agentShapes makes p's random status look as agents report them, in
// part: known condition types, statuses and reasons, single pod and host
// IPs, a known QoS class, container statuses named after the spec's.
func agentShapes(r *rand.Rand, p *corev1.Pod) {
	s := &p.Status
	for i := range s.Conditions {
		c := &s.Conditions[i]
		c.Type, c.Status, c.Reason = conditionTypes[r.Intn(len(conditionTypes))], conditionStatuses[r.Intn(len(conditionStatuses))], conditionReasons[r.Intn(len(conditionReasons))]
		if r.Intn(4) > 0 {
			c.Message, c.LastProbeTime, c.ObservedGeneration = "", metav1.Time{}, 0
		}
	}
	if r.Intn(2) == 0 {
		s.PodIPs = []corev1.PodIP{{IP: s.PodIP}}
		s.HostIPs = []corev1.HostIP{{IP: s.HostIP}}
	}
	s.QOSClass = qosClasses[r.Intn(len(qosClasses))]
	for i := range s.ContainerStatuses {
		if i < len(p.Spec.Containers) && r.Intn(3) > 0 {
			s.ContainerStatuses[i].Name, s.ContainerStatuses[i].Image = p.Spec.Containers[i].Name, p.Spec.Containers[i].Image
		}
	}
	for i := range s.InitContainerStatuses {
		if i < len(p.Spec.InitContainers) && r.Intn(3) > 0 {
			s.InitContainerStatuses[i].Name = p.Spec.InitContainers[i].Name
		}
	}
}

// normalJSON is v as JSON values, with empty lists as null: protobuf, like
// Kubernetes' own storage in etcd, has no empty list apart from none, which
// shows only in the few list fields written even when empty (such as
// extendedResourceClaimStatus.requestMappings).
func normalJSON(t *testing.T, v any) any {
	t.Helper()
	var out any
	if err := json.Unmarshal([]byte(asJSON(t, v)), &out); err != nil {
		t.Fatal(err)
	}
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case []any:
			if len(x) == 0 {
				return nil
			}
			for i := range x {
				x[i] = walk(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = walk(x[k])
			}
		}
		return v
	}
	return walk(out)
}

// TestPodShared: pods made from one base each serve their own name, UID,
// creation time, node, deletion and status, and leave the base as it was.
func TestPodShared(t *testing.T) {
	base := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "web:v1"}}},
	}
	before := asJSON(t, base)
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	a := &Pod{Key: "shop/web-a", Namespace: "shop", Name: "web-a", Phase: "Pending", Base: base, UID: "ua", Created: StampOf(now)}
	b := &Pod{Key: "shop/web-b", Namespace: "shop", Name: "web-b", NodeName: "n2", Phase: "Running", Base: base, UID: "ub", Created: StampOf(now.Add(time.Second)),
		Termination: &Termination{Since: now.Add(2 * time.Second)}}
	b.SetStatus(&corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.2"})
	pa, pb := a.Object(), b.Object()
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	wantB := base.DeepCopy()
	wantB.Name, wantB.UID, wantB.CreationTimestamp, wantB.Spec.NodeName = "web-b", "ub", metav1.NewTime(now.Add(time.Second)), "n2"
	wantB.DeletionTimestamp, wantB.DeletionGracePeriodSeconds = &metav1.Time{Time: now.Add(2 * time.Second)}, &grace
	wantB.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.2"}
	if diff := cmp.Diff(wantB, pb); diff != "" {
		t.Errorf("pod b (-want +got):\n%s", diff)
	}
	if pa.Name != "web-a" || pa.UID != "ua" || pa.Spec.NodeName != "" || pa.DeletionTimestamp != nil || pa.Status.Phase != corev1.PodPending {
		t.Errorf("pod a: %+v", pa)
	}
	if got := asJSON(t, base); got != before {
		t.Errorf("base changed:\n%s", got)
	}
}

func TestStamp(t *testing.T) {
	at := time.Date(2026, 12, 8, 0, 30, 1, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		in   time.Time
		want Stamp
		back time.Time
	}{
		{"zero", time.Time{}, 0, time.Time{}},
		{"to the nanosecond", at, Stamp(at.UnixNano()), at},
		{"another zone, the same instant", at.In(time.FixedZone("x", 3600)), Stamp(at.UnixNano()), at},
		{"the epoch is a nanosecond after it", time.Unix(0, 0), 1, time.Unix(0, 1).UTC()},
		{"after 2262", time.Date(2771, 3, 5, 12, 58, 46, 0, time.UTC), StampBeyond, time.Time{}},
		{"before 1678", time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), StampBeyond, time.Time{}},
	} {
		got := StampOf(tc.in)
		if got != tc.want || !got.Time().Equal(tc.back) || got.Time().IsZero() != tc.back.IsZero() {
			t.Errorf("%s: StampOf(%v) = %d (%v), want %d (%v)", tc.name, tc.in, got, got.Time(), tc.want, tc.back)
		}
	}
	if a, b := StampOf(at), StampOf(at.Add(time.Nanosecond)); !a.Before(b) || b.Before(a) {
		t.Errorf("%d is not before %d", a, b)
	}
}
