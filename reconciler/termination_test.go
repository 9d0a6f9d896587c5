package reconciler

import (
	"fmt"
	"strings"
	"testing"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/keelson/keelson/store"
)

// allPods lists every pod row, terminating ones included, as "name" or
// "name (terminating)".
func allPods(t *testing.T, st *store.Store) []string {
	t.Helper()
	ps, err := st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps {
		s := p.Name
		if p.Terminating() {
			s += " (terminating)"
			if p.Object().DeletionTimestamp == nil {
				t.Errorf("terminating pod %s is served without a deletionTimestamp", p.Name)
			}
		}
		out = append(out, s)
	}
	return out
}

func endpointStates(t *testing.T, st *store.Store) string {
	t.Helper()
	e, err := st.Snapshot().EndpointsOf(memdb.NewWatchSet(), "default/web")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range e.Slices {
		for _, ep := range s.Endpoints {
			out = append(out, fmt.Sprintf("%s ready=%v serving=%v terminating=%v", ep.TargetRef.Name, *ep.Conditions.Ready, *ep.Conditions.Serving, *ep.Conditions.Terminating))
		}
	}
	return strings.Join(out, "; ")
}

// TestTerminationWaitsForNodes: a ready pod scaled away leaves its service's
// backends first and is stopped (its row goes) only once every node that
// programs services has reported the change, or terminationWait has passed.
func TestTerminationWaitsForNodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		// ack, when true, has the nodes report the change; otherwise the
		// clock runs past terminationWait.
		ack bool
	}{{"nodes report", true}, {"a node is slow", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c, a, st, clk := clusterFixture(t)
			register(t, c, "n1")
			register(t, c, "n2")
			register(t, c, "sim") // programs no services: never waited for
			for _, n := range []string{"n1", "n2"} {
				if err := c.ServicesSynced(n, 1); err != nil {
					t.Fatal(err)
				}
			}
			files := map[string]string{"web.yaml": strings.Replace(deploy3, "replicas: 3", "replicas: 2", 1),
				"svc.yaml": svcYAML("web", "  selector: {app: web}\n  ports:\n  - {port: 80}\n")}
			if _, err := a.Apply(revision("c1", files), clk.t); err != nil {
				t.Fatal(err)
			}
			settle(t, c)
			ps := podsOf(t, st)
			for i, p := range ps {
				report(t, c, p, fmt.Sprintf("10.244.0.%d", i+2), true)
			}
			settle(t, c)
			files["web.yaml"] = strings.Replace(deploy3, "replicas: 3", "replicas: 1", 1)
			if _, err := a.Apply(revision("c2", files), clk.t); err != nil {
				t.Fatal(err)
			}
			settle(t, c)
			got := allPods(t, st)
			if len(got) != 2 || !strings.Contains(strings.Join(got, ","), "(terminating)") {
				t.Fatalf("after scaling down: %v, want one pod terminating", got)
			}
			if eps := endpointStates(t, st); strings.Count(eps, "ready=false serving=true terminating=true") != 1 || strings.Count(eps, "ready=true") != 1 {
				t.Errorf("endpoints while terminating: %s", eps)
			}
			var term *store.Pod
			all, _ := st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
			for _, p := range all {
				if p.Terminating() {
					term = p
				}
			}
			if tc.ack {
				if err := c.ServicesSynced("n1", term.Termination.Index); err != nil {
					t.Fatal(err)
				}
				settle(t, c)
				if got := allPods(t, st); len(got) != 2 {
					t.Fatalf("gone before every node reported: %v", got)
				}
				if err := c.ServicesSynced("n2", term.Termination.Index+5); err != nil {
					t.Fatal(err)
				}
			} else {
				clk.t = clk.t.Add(terminationWait)
			}
			settle(t, c)
			if got := allPods(t, st); len(got) != 1 || strings.Contains(got[0], "terminating") {
				t.Fatalf("after the nodes reported (or the wait): %v", got)
			}
			if eps := endpointStates(t, st); strings.Contains(eps, "terminating=true") {
				t.Errorf("endpoints after the pod went: %s", eps)
			}
		})
	}
}

// TestNotReadyPodsGoAtOnce: a pod that takes no connection has nothing to
// drain.
func TestNotReadyPodsGoAtOnce(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	if err := c.ServicesSynced("n1", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": deploy3}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	if _, err := a.Apply(revision("c2", map[string]string{"web.yaml": strings.Replace(deploy3, "replicas: 3", "replicas: 1", 1)}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	if got := allPods(t, st); len(got) != 1 {
		t.Errorf("pods that were never ready: %v, want them gone at once", got)
	}
}

// report has the pod's node report it Running with ip, Ready or not.
func report(t *testing.T, c *Cluster, p *store.Pod, ip string, ready bool) {
	t.Helper()
	rp := readyPod(p.Name, ip, ready, p.Labels()).Object()
	rp.UID = p.UID
	rp.OwnerReferences = p.Base.OwnerReferences
	if err := c.ReportPod(t.Context(), p.NodeName, rp); err != nil {
		t.Fatal(err)
	}
}
