package reconciler

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/api"
)

// registerNode registers a node with cpu CPUs, 8Gi of memory and labels.
func registerNode(t *testing.T, c *Cluster, name, cpu string, labels map[string]string) {
	t.Helper()
	l := map[string]string{"kubernetes.io/hostname": name}
	for k, v := range labels {
		l[k] = v
	}
	if _, err := c.Register(context.Background(), &api.NodeRegistration{Node: corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110")}},
	}}); err != nil {
		t.Fatal(err)
	}
}

// TestPendingUntilANodeFits: a pod that fits no node stays Pending with
// the scheduler's reason (said once, not on every pass), and is bound, the
// same pod, as soon as a node with room registers: no commit needed.
func TestPendingUntilANodeFits(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	registerNode(t, c, "small1", "4", nil)
	registerNode(t, c, "small2", "4", map[string]string{"disk": "hdd"})
	big := strings.Replace(strings.Replace(deploy3, "replicas: 3", "replicas: 1", 1), "cpu: 100m", "cpu: 6", 1)
	if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": big}), clk.t); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		settle(t, c)
	}
	ps := podsOf(t, st)
	if len(ps) != 1 {
		t.Fatalf("%d pods, want 1", len(ps))
	}
	pending := ps[0]
	s := pending.Status()
	cond := scheduledCondition(&s)
	const reason = "0/2 nodes available: 2 insufficient cpu"
	if pending.NodeName != "" || pending.Phase != string(corev1.PodPending) || cond == nil ||
		cond.Status != corev1.ConditionFalse || cond.Reason != corev1.PodReasonUnschedulable || cond.Message != reason {
		t.Fatalf("pod on %q phase %s, PodScheduled %+v; want Pending, Unschedulable: %q", pending.NodeName, pending.Phase, cond, reason)
	}
	if got := eventsOf(t, st, "Pod/"+pending.Key, "FailedScheduling"); len(got) != 1 || got[0] != reason {
		t.Errorf("FailedScheduling events %q, want one: %q", got, reason)
	}

	registerNode(t, c, "big", "8", nil)
	settle(t, c)
	ps = podsOf(t, st)
	if len(ps) != 1 || ps[0].UID != pending.UID || ps[0].NodeName != "big" {
		t.Fatalf("after a big node joined: %d pods, %s on %q; want %s on big", len(ps), ps[0].UID, ps[0].NodeName, pending.UID)
	}
	s = ps[0].Status()
	if cond := scheduledCondition(&s); cond == nil || cond.Status != corev1.ConditionTrue {
		t.Errorf("PodScheduled %+v, want True", cond)
	}
	if got := eventsOf(t, st, "Pod/"+pending.Key, "Scheduled"); len(got) != 1 || got[0] != "assigned "+pending.Key+" to big" {
		t.Errorf("Scheduled events %q", got)
	}
}
