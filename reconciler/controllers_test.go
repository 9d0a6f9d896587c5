package reconciler

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/store"
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

// TestReplicaSetReplacesLostPods: a pod its node reports Failed, and one
// its node says is gone, are replaced by pods with new names and UIDs.
func TestReplicaSetReplacesLostPods(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, c *Cluster, p *store.Pod)
	}{
		{"failed", func(t *testing.T, c *Cluster, p *store.Pod) {
			r := p.Object().DeepCopy()
			r.Status.Phase = corev1.PodFailed
			r.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
			if err := c.ReportPod(context.Background(), p.NodeName, r); err != nil {
				t.Fatal(err)
			}
		}},
		{"gone from its node", func(t *testing.T, c *Cluster, p *store.Pod) {
			// Another pod of that name (another UID, or on another node) is
			// not this one: nothing changes.
			for _, other := range [][2]string{{p.NodeName, "other-uid"}, {"elsewhere", string(p.UID)}} {
				if err := c.ForgetPod(context.Background(), other[0], p.Namespace, p.Name, other[1]); err != nil {
					t.Fatal(err)
				}
				if _, err := c.st.Snapshot().Pod(memdb.NewWatchSet(), p.Key); err != nil {
					t.Fatalf("ForgetPod on %s of UID %s: %v", other[0], other[1], err)
				}
			}
			if err := c.ForgetPod(context.Background(), p.NodeName, p.Namespace, p.Name, string(p.UID)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, a, st, clk := clusterFixture(t)
			register(t, c, "n1")
			register(t, c, "n2")
			if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": deploy3}), clk.t); err != nil {
				t.Fatal(err)
			}
			settle(t, c)
			reportReady(t, c, st, clk.t)
			settle(t, c)
			before := podsOf(t, st)
			if len(before) != 3 {
				t.Fatalf("%d pods, want 3", len(before))
			}
			names, uids := map[string]bool{}, map[string]bool{}
			for _, p := range before {
				names[p.Name], uids[string(p.UID)] = true, true
			}
			lost := before[1]
			tc.lose(t, c, lost)
			settle(t, c)
			after := podsOf(t, st)
			if len(after) != 3 {
				t.Fatalf("%d pods after losing %s, want 3", len(after), lost.Name)
			}
			var fresh []*store.Pod
			for _, p := range after {
				if p.Key == lost.Key {
					t.Errorf("pod %s (phase %s) is still there", p.Name, p.Phase)
				}
				if !names[p.Name] || !uids[string(p.UID)] {
					if names[p.Name] || uids[string(p.UID)] {
						t.Errorf("replacement %s (%s) reuses a name or UID", p.Name, p.UID)
					}
					fresh = append(fresh, p)
				}
			}
			if len(fresh) != 1 || fresh[0].OwnerKey != lost.OwnerKey || fresh[0].NodeName == "" {
				t.Errorf("replacements %v, want one of %s, scheduled", fresh, lost.OwnerKey)
			}
			if all := allPods(t, st); len(all) != 3 {
				t.Errorf("pod rows %v, want the lost one gone", all)
			}
			// A late report of the lost pod does not bring it back, and its
			// node's word that it is gone, again, changes nothing.
			late := lost.Object().DeepCopy()
			late.Status.Phase = corev1.PodRunning
			if err := c.ReportPod(context.Background(), lost.NodeName, late); err == nil || !strings.Contains(err.Error(), "deleted by the controller") {
				t.Errorf("a late report of the lost pod: %v", err)
			}
			if err := c.ForgetPod(context.Background(), lost.NodeName, lost.Namespace, lost.Name, string(lost.UID)); err != nil {
				t.Errorf("ForgetPod of a pod already gone: %v", err)
			}
			settle(t, c)
			if got := podsOf(t, st); len(got) != 3 {
				t.Errorf("%d pods at the end, want 3", len(got))
			}
		})
	}
}

// TestDaemonSetWithNoEligibleNode: a DaemonSet whose node selector matches
// no node makes no pod and says so once, as a Warning event, however many
// passes run: applied after the nodes joined, before them, or during a
// starting controller's grace. A node that comes to match ends the
// warning; losing it again says so again.
func TestDaemonSetWithNoEligibleNode(t *testing.T) {
	for _, tc := range []string{"nodes first", "nodes join later", "during the start-up grace"} {
		t.Run(tc, func(t *testing.T) {
			c, a, st, clk := clusterFixture(t)
			if tc == "during the start-up grace" {
				c.started = clk.t
			}
			nodes := func() {
				register(t, c, "n1")
				register(t, c, "n2")
			}
			if tc != "nodes join later" {
				nodes()
			}
			if _, err := a.Apply(revision("c1", map[string]string{"ds.yaml": daemonSet}), clk.t); err != nil {
				t.Fatal(err)
			}
			settle(t, c)
			warnings := func() []string { return eventsOf(t, st, "DaemonSet/default/logs", "NoEligibleNodes") }
			switch tc {
			case "nodes join later":
				if got := warnings(); len(got) != 0 {
					t.Errorf("warnings with no node at all: %q", got)
				}
				nodes()
			case "during the start-up grace":
				clk.t = clk.t.Add(c.cfg.StartupGrace)
			}
			for range 4 {
				settle(t, c)
				reportReady(t, c, st, clk.t)
			}
			if ps := podsOf(t, st); len(ps) != 0 {
				t.Errorf("%d pods, want none", len(ps))
			}
			got := warnings()
			if len(got) != 1 {
				t.Fatalf("NoEligibleNodes events %q, want 1", got)
			}
			if !strings.Contains(got[0], "matches none of the 2 node(s)") {
				t.Errorf("warning %q", got[0])
			}
			// Its status says so too, and stays put from pass to pass.
			o, err := st.Snapshot().Object(memdb.NewWatchSet(), "DaemonSet/default/logs")
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := o.Status.(*appsv1.DaemonSetStatus); !ok || len(s.Conditions) != 1 || s.Conditions[0].Type != noEligibleNodes || s.Conditions[0].Message != got[0] {
				t.Errorf("status %+v, want the NoEligibleNodes condition", o.Status)
			}
			settle(t, c)
			if again, _ := st.Snapshot().Object(memdb.NewWatchSet(), o.Key); again.ModifyIndex != o.ModifyIndex {
				t.Errorf("the DaemonSet was written again by passes that changed nothing")
			}

			// A worker joins: a pod, no new warning; it leaves: one more.
			registerNode(t, c, "w1", "4", map[string]string{"role": "worker"})
			settle(t, c)
			if ps := podsOf(t, st); len(ps) != 1 {
				t.Errorf("%d pods with a worker, want 1", len(ps))
			}
			if o, _ := st.Snapshot().Object(memdb.NewWatchSet(), "DaemonSet/default/logs"); len(o.Status.(*appsv1.DaemonSetStatus).Conditions) != 0 {
				t.Errorf("conditions %+v with an eligible node", o.Status.(*appsv1.DaemonSetStatus).Conditions)
			}
			registerNode(t, c, "w1", "4", nil)
			settle(t, c)
			settle(t, c)
			if got := warnings(); len(got) != 2 {
				t.Errorf("NoEligibleNodes events %q, want 2 once the worker lost its label", got)
			}
		})
	}
}

// TestJobActiveDeadline: a Job active past activeDeadlineSeconds stops its
// pods (Ready ones terminate first) and fails with DeadlineExceeded; before
// the deadline nothing happens.
func TestJobActiveDeadline(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	j := strings.Replace(job, "  backoffLimit: 1\n", "  backoffLimit: 1\n  activeDeadlineSeconds: 60\n", 1)
	if _, err := a.Apply(revision("c1", map[string]string{"job.yaml": j}), clk.t); err != nil {
		t.Fatal(err)
	}
	start := clk.t
	settle(t, c)
	reportReady(t, c, st, clk.t)
	status := func() *batchv1.JobStatus {
		o, err := st.Snapshot().Object(memdb.NewWatchSet(), "Job/default/migrate")
		if err != nil {
			t.Fatal(err)
		}
		return o.Status.(*batchv1.JobStatus)
	}
	clk.t = start.Add(59 * time.Second)
	reportReady(t, c, st, clk.t) // the node's lease too
	settle(t, c)
	if s, n := status(), len(podsOf(t, st)); n != 2 || s.Active != 2 || len(s.Conditions) != 0 {
		t.Fatalf("before the deadline: %d pods, status %+v", n, s)
	}
	clk.t = start.Add(61 * time.Second)
	if err := c.reconcileOnce(memdb.NewWatchSet()); err != nil {
		t.Fatal(err)
	}
	s := status()
	if len(s.Conditions) != 1 || s.Conditions[0].Type != batchv1.JobFailed || s.Conditions[0].Status != corev1.ConditionTrue ||
		s.Conditions[0].Reason != "DeadlineExceeded" || s.Active != 0 || s.CompletionTime != nil {
		t.Errorf("past the deadline: status %+v", s)
	}
	if got := eventsOf(t, st, "Job/default/migrate", "DeadlineExceeded"); len(got) != 1 {
		t.Errorf("DeadlineExceeded events %q, want 1", got)
	}
	if got := allPods(t, st); len(got) != 2 || !strings.HasSuffix(got[0], "(terminating)") || !strings.HasSuffix(got[1], "(terminating)") {
		t.Errorf("pods right after the deadline: %v, want both terminating", got)
	}
	clk.t = clk.t.Add(terminationWait)
	settle(t, c)
	if got := allPods(t, st); len(got) != 0 {
		t.Errorf("pods left after the deadline: %v", got)
	}
	if s := status(); len(s.Conditions) != 1 || s.Active != 0 || s.Failed != 0 {
		t.Errorf("finished Job's status moved: %+v", s)
	}
	if got := eventsOf(t, st, "Job/default/migrate", "DeadlineExceeded"); len(got) != 1 {
		t.Errorf("DeadlineExceeded events %q after more passes, want 1", got)
	}
}

// TestDeploymentScaleDownOrder: scaling a Deployment down through the
// cluster loop deletes its pods as Kubernetes does: unscheduled first, then
// not ready, then those ready for the least time (the newest).
func TestDeploymentScaleDownOrder(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1") // 4 CPUs: four pods of 1 CPU
	web := func(replicas string) string {
		return strings.Replace(strings.Replace(deploy3, "replicas: 3", "replicas: "+replicas, 1), "cpu: 100m", "cpu: 1", 1)
	}
	names := func() map[string]bool {
		out := map[string]bool{}
		for _, p := range podsOf(t, st) {
			out[p.Name] = true
		}
		return out
	}
	newPods := func(seen map[string]bool) []string {
		var out []string
		for n := range names() {
			if !seen[n] {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}
	// Two pods, Ready since t0+1s.
	t0 := clk.t
	if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": web("2")}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	clk.t = t0.Add(time.Second)
	reportReady(t, c, st, clk.t)
	oldest := newPods(nil)
	// Two more at t0+10s: one Ready at t0+11s, one not.
	clk.t = t0.Add(10 * time.Second)
	if _, err := a.Apply(revision("c2", map[string]string{"web.yaml": web("4")}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	seen := names()
	second := newPods(map[string]bool{oldest[0]: true, oldest[1]: true})
	if len(oldest) != 2 || len(second) != 2 {
		t.Fatalf("pods %v then %v", oldest, second)
	}
	clk.t = t0.Add(11 * time.Second)
	reportPods(t, c, st, clk.t, func(p *store.Pod) bool { return p.Name != second[1] })
	// A fifth at t0+20s finds no room.
	clk.t = t0.Add(20 * time.Second)
	if _, err := a.Apply(revision("c3", map[string]string{"web.yaml": web("5")}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	fifth := newPods(seen)
	if len(fifth) != 1 {
		t.Fatalf("fifth pod %v", fifth)
	}
	if p, _ := st.Snapshot().Pod(memdb.NewWatchSet(), "default/"+fifth[0]); p.NodeName != "" {
		t.Fatalf("the fifth pod was scheduled on %s", p.NodeName)
	}

	clk.t = t0.Add(30 * time.Second)
	if _, err := a.Apply(revision("c4", map[string]string{"web.yaml": web("2")}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	var deleted []string
	for _, e := range []string{fifth[0], second[1], second[0]} {
		deleted = append(deleted, eventsOf(t, st, "Pod/default/"+e, "Deleted")...)
	}
	if got := newPods(nil); !cmp.Equal(got, oldest) {
		t.Errorf("pods left %v, want the two Ready longest %v (deleted: unscheduled %s, not ready %s, ready recently %s); events %q",
			got, oldest, fifth[0], second[1], second[0], deleted)
	}
}
