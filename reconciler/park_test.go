package reconciler

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/store"
)

// parkWeb is web(n, image, spec) with the scale-down delay annotation
// (none when delay is empty) and a Service "web" in front of it.
func parkWeb(n int, image, delay, spec string) string {
	m := web(n, image, spec)
	if delay != "" {
		m = strings.Replace(m, "  name: web\n", "  name: web\n  annotations: {keelson.dev/scale-down-delay: \""+delay+"\"}\n", 1)
	}
	return m + "---\n" + svcYAML("web", "  selector: {app: web}\n  ports:\n  - {port: 80}\n")
}

// reportServing is the agents' part with addresses: every scheduled pod
// that is not terminating is reported Running and Ready with an address of
// its own, so that the endpoints controller publishes it.
func reportServing(t *testing.T, c *Cluster, st *store.Store, now time.Time) {
	t.Helper()
	reportPods(t, c, st, now, func(*store.Pod) bool { return true }) // leases, and Ready since its first report
	for _, p := range podsOf(t, st) {
		if p.NodeName == "" || p.PodIP != "" {
			continue
		}
		r := p.Object().DeepCopy()
		h := 0
		for _, b := range []byte(p.Name) {
			h = h*31 + int(b)
		}
		r.Status.PodIP = fmt.Sprintf("10.244.%d.%d", (h>>8)&0xff, h&0xff)
		if err := c.ReportPod(t.Context(), p.NodeName, r); err != nil {
			t.Fatal(err)
		}
	}
}

// parkFixture is a warm cluster of two nodes running parkWeb(n, web:v1,
// delay), every pod serving.
func parkFixture(t *testing.T, n int, delay string) (*Cluster, *Applier, *store.Store, *clock) {
	t.Helper()
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	register(t, c, "n2")
	apply(t, a, clk, "v1", parkWeb(n, "web:v1", delay, ""))
	for range 3 {
		settle(t, c)
		reportServing(t, c, st, clk.t)
	}
	clk.t = clk.t.Add(time.Minute)
	settle(t, c)
	if got := endpointPods(t, st); len(got) != n {
		t.Fatalf("fixture: endpoints %v, want %d pods", got, n)
	}
	return c, a, st, clk
}

// parkedRows are the parked pods by key.
func parkedRows(t *testing.T, st *store.Store) map[string]*store.ParkedPod {
	t.Helper()
	rows, err := st.Snapshot().ParkedPods(memdb.NewWatchSet())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*store.ParkedPod{}
	for _, r := range rows {
		out[r.Key] = r
	}
	return out
}

// endpointPods are the names of the pods in the Service's EndpointSlices.
func endpointPods(t *testing.T, st *store.Store) []string {
	t.Helper()
	e, err := st.Snapshot().EndpointsOf(memdb.NewWatchSet(), "default/web")
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range e.Slices {
		for _, ep := range s.Endpoints {
			out = append(out, ep.TargetRef.Name)
		}
	}
	sort.Strings(out)
	return out
}

// podUIDs are the pods that stay (not terminating) by image: name → UID.
func podUIDs(t *testing.T, st *store.Store, image string) map[string]types.UID {
	t.Helper()
	out := map[string]types.UID{}
	for _, p := range podsOf(t, st) {
		if p.Base.Spec.Containers[0].Image == image {
			out[p.Name] = p.UID
		}
	}
	return out
}

func names(m map[string]types.UID) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// complete reports whether the Deployment's status is a complete rollout
// of n replicas.
func complete(t *testing.T, st *store.Store, n int32) bool {
	t.Helper()
	_, s := deployment(t, st)
	return s.Replicas == n && s.UpdatedReplicas == n && s.AvailableReplicas == n && s.ReadyReplicas == n &&
		progressing(s).Reason == reasonNewRSAvailable
}

// rollParked applies the manifest and makes passes (the agents reporting
// between them, 2 s apart) until the rollout is complete. At every pass no
// parked pod is an endpoint. It returns the ScalingReplicaSet events of
// the rollout.
func rollParked(t *testing.T, c *Cluster, a *Applier, st *store.Store, clk *clock, sha, manifest string, n int32) []string {
	t.Helper()
	before := len(eventsOf(t, st, "Deployment/default/web", "ScalingReplicaSet"))
	apply(t, a, clk, sha, manifest)
	for i := 0; ; i++ {
		if i == 50 {
			t.Fatalf("rollout %s not complete after 50 passes", sha)
		}
		pass(t, c)
		parked := parkedRows(t, st)
		for _, name := range endpointPods(t, st) {
			if parked["default/"+name] != nil {
				t.Fatalf("pass %d of %s: parked pod %s is an endpoint", i, sha, name)
			}
		}
		if complete(t, st, n) {
			break
		}
		reportServing(t, c, st, clk.t)
		clk.t = clk.t.Add(2 * time.Second)
	}
	return eventsOf(t, st, "Deployment/default/web", "ScalingReplicaSet")[before:]
}

// TestScaleDownDelayParksAndRevertTakesBack: with the annotation, a
// rollout parks the old ready pods instead of deleting them (out of the
// endpoints, not counted), in the same steps as without it; a revert
// within the delay takes them back, with their UIDs, and is complete in a
// few passes without making a pod or waiting for any report. Without the
// annotation, nothing is parked and the revert makes new pods.
func TestScaleDownDelayParksAndRevertTakesBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay string
	}{{"with a scale-down delay", "30s"}, {"without", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			c, a, st, clk := parkFixture(t, 10, tc.delay)
			v1 := podUIDs(t, st, "web:v1")
			oldRS := strings.TrimPrefix(podsOf(t, st)[0].OwnerKey, "ReplicaSet/default/")

			scaling := rollParked(t, c, a, st, clk, "v2", parkWeb(10, "web:v2", tc.delay, ""), 10)
			v2 := podUIDs(t, st, "web:v2")
			newRS := strings.Fields(replicaSets(t, st)[1])[0]
			for i, m := range scaling {
				scaling[i] = strings.TrimPrefix(strings.ReplaceAll(strings.ReplaceAll(m, newRS, "NEW"), oldRS, "OLD"), "Scaled ")
			}
			want := []string{"up replica set NEW to 3", "down replica set OLD to 8", "up replica set NEW to 5", "down replica set OLD to 3", "up replica set NEW to 10", "down replica set OLD to 0"}
			if diff := cmp.Diff(want, scaling); diff != "" {
				t.Errorf("the rollout's steps (-want +got):\n%s", diff)
			}
			if got, want := endpointPods(t, st), names(v2); !cmp.Equal(got, want) {
				t.Errorf("endpoints after the rollout %v, want the v2 pods %v", got, want)
			}
			_, s := deployment(t, st)
			if s.Replicas != 10 || s.AvailableReplicas != 10 || s.UpdatedReplicas != 10 || s.UnavailableReplicas != 0 {
				t.Errorf("status after the rollout %+v: parked pods must not count", s)
			}
			parked := parkedRows(t, st)
			if tc.delay == "" {
				if len(parked) != 0 || len(podUIDs(t, st, "web:v1")) != 0 {
					t.Fatalf("without the annotation: parked %v, v1 pods %v; want none", parked, podUIDs(t, st, "web:v1"))
				}
			} else {
				if got := podUIDs(t, st, "web:v1"); !cmp.Equal(got, v1) {
					t.Fatalf("v1 pods after the rollout %v, want all of them, parked: %v", got, v1)
				}
				for name := range v1 {
					r := parked["default/"+name]
					if r == nil || r.Deployment != "Deployment/default/web" || r.Until.Before(clk.t) || r.Until.After(clk.t.Add(30*time.Second)) {
						t.Errorf("parked row of %s: %+v (now %s)", name, r, clk.t)
					}
				}
				if len(parked) != len(v1) {
					t.Errorf("%d parked, want the %d v1 pods", len(parked), len(v1))
				}
				ev := eventsOf(t, st, "Pod/default/"+names(v1)[0], "Parked")
				if len(ev) != 1 || !strings.Contains(ev[0], "scale-down delay of Deployment/default/web") {
					t.Errorf("Parked events of a v1 pod: %q", ev)
				}
			}

			// The revert: passes alone, no report from any agent.
			apply(t, a, clk, "revert-v2", parkWeb(10, "web:v1", tc.delay, ""))
			passes := 0
			for !complete(t, st, 10) && passes < 12 {
				pass(t, c)
				passes++
			}
			if tc.delay == "" {
				if complete(t, st, 10) {
					t.Errorf("without the annotation the revert completed without any pod reporting Ready")
				}
				if got := podUIDs(t, st, "web:v1"); len(got) == 0 {
					t.Errorf("without the annotation the revert made no pod")
				}
				return
			}
			t.Logf("revert complete in %d passes", passes)
			if passes > 6 {
				t.Errorf("the revert took %d passes, want the 6 of its steps", passes)
			}
			if got := podUIDs(t, st, "web:v1"); !cmp.Equal(got, v1) {
				t.Errorf("v1 pods after the revert %v, want the same pods (UIDs) %v", got, v1)
			}
			if got := podUIDs(t, st, "web:v2"); !cmp.Equal(got, v2) {
				t.Errorf("v2 pods after the revert %v, want them all, parked, %v", got, v2)
			}
			parked = parkedRows(t, st)
			for name := range v2 {
				if parked["default/"+name] == nil {
					t.Errorf("v2 pod %s not parked after the revert", name)
				}
			}
			if len(parked) != len(v2) {
				t.Errorf("%d parked after the revert, want the %d v2 pods", len(parked), len(v2))
			}
			if got, want := endpointPods(t, st), names(v1); !cmp.Equal(got, want) {
				t.Errorf("endpoints after the revert %v, want the v1 pods %v", got, want)
			}
			if ev := eventsOf(t, st, "Pod/default/"+names(v1)[0], "Unparked"); len(ev) != 1 {
				t.Errorf("Unparked events of a v1 pod: %q", ev)
			}
		})
	}
}

// TestParkedPodsGo: parked pods are deleted when their delay ends, when
// the annotation goes (or the Deployment turns to Recreate), with their
// Deployment, or when they stop being ready; the current ReplicaSet's pods
// are never parked.
func TestParkedPodsGo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, c *Cluster, a *Applier, st *store.Store, clk *clock)
		// wantV1 v1 pods remain, wantParked of them parked, wantV2 v2 pods.
		wantV1, wantParked, wantV2 int
		wantReason                 string // of the v1 pods' Deleted events
	}{
		{name: "nothing changes", change: func(*testing.T, *Cluster, *Applier, *store.Store, *clock) {},
			wantV1: 6, wantParked: 6, wantV2: 6},
		{name: "the delay ends", change: func(t *testing.T, c *Cluster, a *Applier, st *store.Store, clk *clock) {
			clk.t = clk.t.Add(31 * time.Second)
		}, wantV2: 6, wantReason: "parked, and the scale-down delay of 30s ended"},
		{name: "the annotation is removed", change: func(t *testing.T, c *Cluster, a *Applier, st *store.Store, clk *clock) {
			apply(t, a, clk, "no-delay", parkWeb(6, "web:v2", "", ""))
		}, wantV2: 6, wantReason: "parked, and its Deployment no longer has a scale-down delay"},
		{name: "the delay is 0s", change: func(t *testing.T, c *Cluster, a *Applier, st *store.Store, clk *clock) {
			apply(t, a, clk, "zero", parkWeb(6, "web:v2", "0s", ""))
		}, wantV2: 6, wantReason: "parked, and its Deployment no longer has a scale-down delay"},
		{name: "the Deployment turns to Recreate", change: func(t *testing.T, c *Cluster, a *Applier, st *store.Store, clk *clock) {
			apply(t, a, clk, "recreate", parkWeb(6, "web:v2", "30s", "  strategy: {type: Recreate}\n"))
		}, wantV2: 6, wantReason: "parked, and its Deployment no longer has a scale-down delay"},
		{name: "the Deployment is removed", change: func(t *testing.T, c *Cluster, a *Applier, st *store.Store, clk *clock) {
			apply(t, a, clk, "gone", svcYAML("web", "  selector: {app: web}\n  ports:\n  - {port: 80}\n"))
		}, wantReason: "parked, and its owner ReplicaSet/default/"},
		{name: "a parked pod stops being ready", change: func(t *testing.T, c *Cluster, a *Applier, st *store.Store, clk *clock) {
			for _, p := range podsOf(t, st) {
				if parkedRows(t, st)[p.Key] != nil {
					r := p.Object().DeepCopy()
					r.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: metav1.NewTime(clk.t)}}
					if err := c.ReportPod(t.Context(), p.NodeName, r); err != nil {
						t.Fatal(err)
					}
					return
				}
			}
		}, wantV1: 5, wantParked: 5, wantV2: 6, wantReason: "parked, and it stopped being ready"},
		{name: "Git scales the current ReplicaSet down", change: func(t *testing.T, c *Cluster, a *Applier, st *store.Store, clk *clock) {
			apply(t, a, clk, "fewer", parkWeb(4, "web:v2", "30s", ""))
		}, wantV1: 6, wantParked: 6, wantV2: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, a, st, clk := parkFixture(t, 6, "30s")
			v1 := podUIDs(t, st, "web:v1")
			rollParked(t, c, a, st, clk, "v2", parkWeb(6, "web:v2", "30s", ""), 6)
			if n := len(parkedRows(t, st)); n != 6 {
				t.Fatalf("%d parked after the rollout, want 6", n)
			}
			tc.change(t, c, a, st, clk)
			settle(t, c)
			settle(t, c) // terminating pods go on the pass after
			if got := len(podUIDs(t, st, "web:v1")); got != tc.wantV1 {
				t.Errorf("%d v1 pods, want %d", got, tc.wantV1)
			}
			if got := len(parkedRows(t, st)); got != tc.wantParked {
				t.Errorf("%d parked, want %d", got, tc.wantParked)
			}
			if got := len(podUIDs(t, st, "web:v2")); got != tc.wantV2 {
				t.Errorf("%d v2 pods, want %d", got, tc.wantV2)
			}
			all, err := st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
			if err != nil {
				t.Fatal(err)
			}
			rows := map[string]bool{}
			for _, p := range all {
				rows[p.Key] = true
			}
			for k := range parkedRows(t, st) {
				if !rows[k] {
					t.Errorf("parked row %s outlives its pod", k)
				}
			}
			if tc.wantReason == "" {
				return
			}
			var reasons []string
			for name := range v1 {
				for _, m := range eventsOf(t, st, "Pod/default/"+name, "Deleted") {
					if strings.HasPrefix(m, tc.wantReason) {
						reasons = append(reasons, m)
					}
				}
			}
			if want := len(v1) - tc.wantV1; len(reasons) != want {
				t.Errorf("%d v1 pods deleted with %q, want %d", len(reasons), tc.wantReason, want)
			}
		})
	}
}
