package reconciler

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	memdb "github.com/hashicorp/go-memdb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/store"
)

// web is a Deployment "web" of n replicas running image, with extra lines
// added under spec (strategy, minReadySeconds, ...).
func web(n int, image, spec string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: %d
  selector:
    matchLabels: {app: web}
%s  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: %s
        resources:
          requests: {cpu: 10m, memory: 16Mi}
`, n, spec, image)
}

// rolloutFixture is a warm cluster of two nodes running web(n, v1, spec),
// every pod Ready.
func rolloutFixture(t *testing.T, n int, spec string) (*Cluster, *Applier, *store.Store, *clock) {
	t.Helper()
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	register(t, c, "n2")
	apply(t, a, clk, "v1", web(n, "web:v1", spec))
	for range 3 {
		settle(t, c)
		reportReady(t, c, st, clk.t)
	}
	clk.t = clk.t.Add(time.Minute)
	reportReady(t, c, st, clk.t)
	settle(t, c)
	if got := images(t, st); got["web:v1"] != n || len(got) != 1 {
		t.Fatalf("fixture: pods per image %v, want %d of web:v1", got, n)
	}
	return c, a, st, clk
}

func apply(t *testing.T, a *Applier, clk *clock, sha, manifest string) {
	t.Helper()
	if _, err := a.Apply(revision(sha, map[string]string{"web.yaml": manifest}), clk.t); err != nil {
		t.Fatal(err)
	}
}

// pass is one pass of the controllers.
func pass(t *testing.T, c *Cluster) {
	t.Helper()
	if err := c.reconcileOnce(memdb.NewWatchSet()); err != nil {
		t.Fatal(err)
	}
}

func images(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, p := range podsOf(t, st) {
		out[p.Base.Spec.Containers[0].Image]++
	}
	return out
}

// available counts the pods available at now for minReady.
func available(t *testing.T, st *store.Store, minReady int32, now time.Time) int {
	t.Helper()
	n := 0
	for _, p := range podsOf(t, st) {
		if podAvailable(p, minReady, now) {
			n++
		}
	}
	return n
}

func deployment(t *testing.T, st *store.Store) (*appsv1.Deployment, *appsv1.DeploymentStatus) {
	t.Helper()
	o, err := st.Snapshot().Object(memdb.NewWatchSet(), "Deployment/default/web")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := o.Status.(*appsv1.DeploymentStatus)
	if s == nil {
		s = &appsv1.DeploymentStatus{}
	}
	return o.Obj.(*appsv1.Deployment), s
}

// replicaSets is "name revision replicas image" of every ReplicaSet, by revision.
func replicaSets(t *testing.T, st *store.Store) []string {
	t.Helper()
	objs, err := st.Snapshot().Objects(memdb.NewWatchSet(), store.ObjectQuery{Kind: "ReplicaSet"})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(objs, func(i, j int) bool {
		ri := objs[i].Obj.(*appsv1.ReplicaSet).Annotations[revisionAnnotation]
		rj := objs[j].Obj.(*appsv1.ReplicaSet).Annotations[revisionAnnotation]
		return len(ri) < len(rj) || len(ri) == len(rj) && ri < rj
	})
	var out []string
	for _, o := range objs {
		rs := o.Obj.(*appsv1.ReplicaSet)
		out = append(out, fmt.Sprintf("%s %s %d %s", rs.Name, rs.Annotations[revisionAnnotation], *rs.Spec.Replicas, rs.Spec.Template.Spec.Containers[0].Image))
	}
	return out
}

func progressing(s *appsv1.DeploymentStatus) appsv1.DeploymentCondition {
	if c := deploymentCondition(s, appsv1.DeploymentProgressing); c != nil {
		return *c
	}
	return appsv1.DeploymentCondition{}
}

func eventsOf(t *testing.T, st *store.Store, key, reason string) []string {
	t.Helper()
	evs, err := st.Snapshot().Events(memdb.NewWatchSet(), key)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if reason == "" || e.Reason == reason {
			out = append(out, e.Message)
		}
	}
	return out
}

// TestRollingUpdateStaysWithinBounds rolls Deployments from v1 to v2 one
// pass at a time, the agents reporting every pod Ready between passes, and
// checks at every pass that there are never more than replicas+maxSurge
// pods nor fewer than replicas−maxUnavailable available ones.
func TestRollingUpdateStaysWithinBounds(t *testing.T) {
	for _, tc := range []struct {
		name               string
		replicas           int
		spec               string
		surge, unavailable int
		minReady           int32
		wantScaling        []string // ScalingReplicaSet events of the rollout; new is NEW, old OLD
	}{
		{name: "defaults 25%", replicas: 10, surge: 3, unavailable: 2,
			wantScaling: []string{"up NEW to 3", "down OLD to 8", "up NEW to 5", "down OLD to 3", "up NEW to 10", "down OLD to 0"}},
		{name: "surge only", replicas: 10, spec: "  strategy:\n    rollingUpdate: {maxSurge: 2, maxUnavailable: 0}\n", surge: 2, unavailable: 0},
		{name: "unavailable only", replicas: 10, spec: "  strategy:\n    rollingUpdate: {maxSurge: 0, maxUnavailable: 30%}\n", surge: 0, unavailable: 3},
		{name: "one replica", replicas: 1, surge: 1, unavailable: 0,
			wantScaling: []string{"up NEW to 1", "down OLD to 0"}},
		{name: "minReadySeconds", replicas: 6, spec: "  minReadySeconds: 5\n", surge: 2, unavailable: 1, minReady: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, a, st, clk := rolloutFixture(t, tc.replicas, tc.spec)
			oldRS := strings.Fields(replicaSets(t, st)[0])[0]
			apply(t, a, clk, "v2", web(tc.replicas, "web:v2", tc.spec))
			maxPods, minAvail := 0, tc.replicas
			for i := 0; ; i++ {
				if i == 100 {
					t.Fatalf("no complete rollout after 100 passes: %v", images(t, st))
				}
				pass(t, c)
				total, avail := len(podsOf(t, st)), available(t, st, tc.minReady, clk.t)
				if total > tc.replicas+tc.surge || avail < tc.replicas-tc.unavailable {
					t.Fatalf("pass %d: %d pods, %d available; bounds are %d pods, %d available", i, total, avail, tc.replicas+tc.surge, tc.replicas-tc.unavailable)
				}
				maxPods, minAvail = max(maxPods, total), min(minAvail, avail)
				reportReady(t, c, st, clk.t)
				clk.t = clk.t.Add(2 * time.Second)
				if got := images(t, st); got["web:v2"] == tc.replicas && len(got) == 1 {
					if _, s := deployment(t, st); progressing(s).Reason == reasonNewRSAvailable {
						break
					}
				}
			}
			// Once complete, a pass changes nothing (the loop would spin).
			idx := st.Snapshot().MaxIndex(memdb.NewWatchSet(), store.TableObjects, store.TablePods, store.TableEvents)
			pass(t, c)
			if now := st.Snapshot().MaxIndex(memdb.NewWatchSet(), store.TableObjects, store.TablePods, store.TableEvents); now != idx {
				t.Errorf("a pass after the rollout changed the store (index %d → %d)", idx, now)
			}
			if maxPods != tc.replicas+tc.surge || minAvail != tc.replicas-tc.unavailable {
				t.Errorf("the rollout reached %d pods and %d available; want exactly the bounds %d and %d", maxPods, minAvail, tc.replicas+tc.surge, tc.replicas-tc.unavailable)
			}
			d, s := deployment(t, st)
			rss := replicaSets(t, st)
			newRS := strings.Fields(rss[1])[0]
			if want := []string{oldRS + " 1 0 web:v1", newRS + " 2 " + fmt.Sprint(tc.replicas) + " web:v2"}; !cmp.Equal(rss, want) {
				t.Errorf("ReplicaSets %v, want %v", rss, want)
			}
			if d.Annotations[revisionAnnotation] != "2" {
				t.Errorf("deployment revision %q, want 2", d.Annotations[revisionAnnotation])
			}
			n := int32(tc.replicas)
			if s.Replicas != n || s.UpdatedReplicas != n || s.ReadyReplicas != n || s.AvailableReplicas != n || s.UnavailableReplicas != 0 || s.ObservedGeneration != 1 {
				t.Errorf("status %+v", s)
			}
			if c := deploymentCondition(s, appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionTrue || c.Reason != reasonMinAvailable {
				t.Errorf("Available condition %+v", c)
			}
			if c := progressing(s); c.Status != corev1.ConditionTrue || c.Message != fmt.Sprintf("ReplicaSet %q has successfully progressed.", newRS) {
				t.Errorf("Progressing condition %+v", c)
			}
			if tc.wantScaling != nil {
				var got []string
				for _, m := range eventsOf(t, st, "Deployment/default/web", "ScalingReplicaSet") {
					m = strings.ReplaceAll(strings.ReplaceAll(m, newRS, "NEW"), oldRS, "OLD")
					got = append(got, strings.TrimPrefix(m, "Scaled "))
				}
				got = got[1:] // the fixture's "up OLD to N"
				want := strings.Replace(strings.Join(tc.wantScaling, ";"), "up ", "up replica set ", -1)
				want = strings.Replace(want, "down ", "down replica set ", -1)
				if diff := cmp.Diff(strings.Split(want, ";"), got); diff != "" {
					t.Errorf("scaling events (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestMinReadySecondsDelaysAvailability(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	apply(t, a, clk, "v1", web(3, "web:v1", "  minReadySeconds: 10\n"))
	settle(t, c)
	readyAt := clk.t
	reportReady(t, c, st, readyAt)
	for _, tc := range []struct {
		after     time.Duration
		available int32
		cond      corev1.ConditionStatus
	}{
		{after: 0, available: 0, cond: corev1.ConditionFalse},
		{after: 10 * time.Second, available: 0, cond: corev1.ConditionFalse}, // not yet strictly past
		{after: 11 * time.Second, available: 3, cond: corev1.ConditionTrue},
	} {
		clk.t = readyAt.Add(tc.after)
		// Reports that repeat Ready keep the time it became so.
		reportReady(t, c, st, clk.t)
		settle(t, c)
		_, s := deployment(t, st)
		if s.ReadyReplicas != 3 || s.AvailableReplicas != tc.available {
			t.Errorf("%s after Ready: ready %d available %d, want 3 and %d", tc.after, s.ReadyReplicas, s.AvailableReplicas, tc.available)
		}
		if c := deploymentCondition(s, appsv1.DeploymentAvailable); c == nil || c.Status != tc.cond {
			t.Errorf("%s after Ready: Available condition %+v, want %s", tc.after, c, tc.cond)
		}
	}
}

// TestBrokenRolloutHaltsAtDeadline: a new version whose pods never become
// Ready takes no more than maxUnavailable old pods down, and is marked
// ProgressDeadlineExceeded once no progress happened for the deadline; a
// change of the Deployment in Git meanwhile (which resets its row's status)
// does not restart the clock.
func TestBrokenRolloutHaltsAtDeadline(t *testing.T) {
	spec := "  progressDeadlineSeconds: 60\n"
	c, a, st, clk := rolloutFixture(t, 10, spec)
	start := clk.t
	apply(t, a, clk, "v2", web(10, "web:broken", spec))
	var lastProgress time.Time
	for clk.t.Sub(start) < 3*time.Minute {
		pass(t, c)
		reportPods(t, c, st, clk.t, func(p *store.Pod) bool { return p.Base.Spec.Containers[0].Image == "web:v1" })
		pass(t, c)
		total, avail := len(podsOf(t, st)), available(t, st, 0, clk.t)
		if total > 13 || avail < 8 {
			t.Fatalf("at %s: %d pods, %d available; bounds are 13 pods, 8 available", clk.t.Sub(start), total, avail)
		}
		_, s := deployment(t, st)
		cond := progressing(s)
		if cond.Status == corev1.ConditionTrue {
			lastProgress = cond.LastUpdateTime.Time
		}
		if clk.t.Sub(start) == 30*time.Second {
			// Git changes the Deployment (not its template): its row's
			// status starts empty, the rollout's state is on the
			// ReplicaSets.
			apply(t, a, clk, "v2b", strings.Replace(web(10, "web:broken", spec), "  name: web\n", "  name: web\n  labels: {team: a}\n", 1))
		}
		clk.t = clk.t.Add(5 * time.Second)
	}
	_, s := deployment(t, st)
	cond := progressing(s)
	if cond.Status != corev1.ConditionFalse || cond.Reason != reasonTimedOut || !strings.HasSuffix(cond.Message, "has timed out progressing.") {
		t.Fatalf("Progressing condition %+v", cond)
	}
	if d := cond.LastTransitionTime.Sub(lastProgress); d <= 60*time.Second || d > 70*time.Second {
		t.Errorf("deadline exceeded %s after the last progress (at %s), want just past 60s", d, lastProgress.Sub(start))
	}
	if lastProgress.Sub(start) > 30*time.Second {
		t.Errorf("the last progress is at %s: the change in Git restarted the clock", lastProgress.Sub(start))
	}
	if got := images(t, st); got["web:v1"] != 8 || got["web:broken"] != 5 {
		t.Errorf("pods %v, want 8 old serving and 5 new", got)
	}
	if w := eventsOf(t, st, "Deployment/default/web", reasonTimedOut); len(w) != 1 || !strings.Contains(w[0], "the old pods keep serving") {
		t.Errorf("deadline warnings %q, want one", w)
	}
	if c := deploymentCondition(s, appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionTrue {
		t.Errorf("Available condition %+v: maxUnavailable old pods down still leaves it available", c)
	}
	if s.UpdatedReplicas != 5 || s.AvailableReplicas != 8 || s.UnavailableReplicas != 5 {
		t.Errorf("status %+v", s)
	}

	// An old pod fails its readiness now (its node is in trouble): the
	// broken version does not grow into the room it leaves.
	sick := ""
	for _, p := range podsOf(t, st) {
		if p.Base.Spec.Containers[0].Image == "web:v1" {
			sick = p.Key
			break
		}
	}
	for range 5 {
		reportPods(t, c, st, clk.t, func(p *store.Pod) bool { return p.Base.Spec.Containers[0].Image == "web:v1" && p.Key != sick })
		pass(t, c)
		clk.t = clk.t.Add(5 * time.Second)
	}
	var specs []string
	for _, rs := range replicaSets(t, st) {
		specs = append(specs, strings.Join(strings.Fields(rs)[2:], " "))
	}
	if want := []string{"8 web:v1", "5 web:broken"}; !cmp.Equal(specs, want) {
		t.Errorf("after an old pod became unready: ReplicaSets (replicas image) %v, want %v", specs, want)
	}
}

// TestUnhealthyOldPodsGoFirst: the first scale-down of a rollout takes the
// old pods that are not Ready, not available ones.
func TestUnhealthyOldPodsGoFirst(t *testing.T) {
	c, a, st, clk := rolloutFixture(t, 10, "")
	var sick []string
	for _, p := range podsOf(t, st)[:2] {
		sick = append(sick, p.Key)
	}
	reportPods(t, c, st, clk.t, func(p *store.Pod) bool { return !slices.Contains(sick, p.Key) })
	apply(t, a, clk, "v2", web(10, "web:v2", ""))
	pass(t, c)
	if got := images(t, st); got["web:v1"] != 8 || got["web:v2"] != 3 {
		t.Fatalf("after the first pass: %v", got)
	}
	for _, p := range podsOf(t, st) {
		if slices.Contains(sick, p.Key) {
			t.Errorf("unready old pod %s kept while ready ones went", p.Key)
		}
	}
	if n := available(t, st, 0, clk.t); n != 8 {
		t.Errorf("%d available after cleaning up unready pods, want all 8 old ones", n)
	}
}

// TestPausedDeployment: a paused Deployment starts no rollout (its time
// paused does not count against the deadline) and still scales; resumed,
// it rolls out.
func TestPausedDeployment(t *testing.T) {
	spec := "  progressDeadlineSeconds: 30\n"
	c, a, st, clk := rolloutFixture(t, 3, spec)
	apply(t, a, clk, "v2", web(4, "web:v2", spec+"  paused: true\n"))
	for range 5 {
		pass(t, c)
		reportReady(t, c, st, clk.t)
		clk.t = clk.t.Add(20 * time.Second)
	}
	if got := images(t, st); got["web:v1"] != 4 || len(got) != 1 {
		t.Errorf("paused: pods %v, want 4 of v1 (scaled, not rolled)", got)
	}
	if _, s := deployment(t, st); progressing(s).Reason != reasonPaused || progressing(s).Status != corev1.ConditionUnknown {
		t.Errorf("paused: Progressing %+v", progressing(s))
	}
	apply(t, a, clk, "v3", web(4, "web:v2", spec))
	for range 10 {
		pass(t, c)
		reportReady(t, c, st, clk.t)
		clk.t = clk.t.Add(time.Second)
	}
	if got := images(t, st); got["web:v2"] != 4 || len(got) != 1 {
		t.Errorf("resumed: pods %v, want 4 of v2", got)
	}
	if _, s := deployment(t, st); progressing(s).Reason != reasonNewRSAvailable {
		t.Errorf("resumed: Progressing %+v", progressing(s))
	}
}

// TestRevertReusesReplicaSet: applying the old manifest again (a git
// revert) rolls back to the old ReplicaSet, under its name, with the next
// revision number.
func TestRevertReusesReplicaSet(t *testing.T) {
	c, a, st, clk := rolloutFixture(t, 4, "")
	roll := func(sha, image string) {
		t.Helper()
		apply(t, a, clk, sha, web(4, image, ""))
		for range 20 {
			pass(t, c)
			reportReady(t, c, st, clk.t)
			clk.t = clk.t.Add(time.Second)
		}
		if got := images(t, st); got[image] != 4 || len(got) != 1 {
			t.Fatalf("after rolling to %s: %v", image, got)
		}
	}
	roll("v2", "web:v2")
	before := replicaSets(t, st)
	roll("revert-v2", "web:v1")
	after := replicaSets(t, st)
	v1, v2 := strings.Fields(before[0])[0], strings.Fields(before[1])[0]
	if want := []string{v2 + " 2 0 web:v2", v1 + " 3 4 web:v1"}; !cmp.Equal(after, want) {
		t.Errorf("ReplicaSets after the revert %v, want %v (before %v)", after, want, before)
	}
	o, _ := st.Snapshot().Object(memdb.NewWatchSet(), "ReplicaSet/default/"+v1)
	if h := o.Obj.(*appsv1.ReplicaSet).Annotations[revisionHistoryAnnotation]; h != "1" {
		t.Errorf("revision history %q, want 1", h)
	}
	if d, _ := deployment(t, st); d.Annotations[revisionAnnotation] != "3" {
		t.Errorf("deployment revision %q, want 3", d.Annotations[revisionAnnotation])
	}
}

func TestRecreate(t *testing.T) {
	spec := "  strategy: {type: Recreate}\n"
	c, a, st, clk := rolloutFixture(t, 3, spec)
	apply(t, a, clk, "v2", web(3, "web:v2", spec))
	var seen []string
	for range 6 {
		pass(t, c)
		got := images(t, st)
		if got["web:v1"] > 0 && got["web:v2"] > 0 {
			t.Fatalf("old and new pods at once: %v", got)
		}
		seen = append(seen, fmt.Sprint(got))
		reportReady(t, c, st, clk.t)
		clk.t = clk.t.Add(time.Second)
	}
	if want := []string{"map[]", "map[web:v2:3]"}; !cmp.Equal(seen[:2], want) {
		t.Errorf("pods per pass %v, want %v first", seen, want)
	}
	_, s := deployment(t, st)
	if c := progressing(s); c.Reason != reasonNewRSAvailable || s.AvailableReplicas != 3 {
		t.Errorf("status %+v", s)
	}
	if c := deploymentCondition(s, appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionTrue {
		t.Errorf("Available condition %+v", c)
	}
}

func TestRevisionHistoryLimit(t *testing.T) {
	spec := "  revisionHistoryLimit: 2\n"
	c, a, st, clk := rolloutFixture(t, 2, spec)
	for v := 2; v <= 5; v++ {
		apply(t, a, clk, fmt.Sprintf("v%d", v), web(2, fmt.Sprintf("web:v%d", v), spec))
		for range 10 {
			pass(t, c)
			reportReady(t, c, st, clk.t)
			clk.t = clk.t.Add(time.Second)
		}
	}
	var got []string
	for _, rs := range replicaSets(t, st) {
		f := strings.Fields(rs)
		got = append(got, strings.Join(f[1:], " "))
	}
	if want := []string{"3 0 web:v3", "4 0 web:v4", "5 2 web:v5"}; !cmp.Equal(got, want) {
		t.Errorf("ReplicaSets (revision replicas image) %v, want %v", got, want)
	}
}

// TestRestartMidRollout: a controller killed mid-rollout comes back with
// an empty store; from the same Git revision and the pods the agents report
// it rebuilds the ReplicaSets (names, revisions, replicas) and takes the
// same next step as the controller that was not killed, within the bounds.
func TestRestartMidRollout(t *testing.T) {
	c, a, st, clk := rolloutFixture(t, 10, "")
	apply(t, a, clk, "v2", web(10, "web:v2", ""))
	pass(t, c) // new at 3, old at 8
	reportReady(t, c, st, clk.t)
	clk.t = clk.t.Add(time.Second)
	pass(t, c) // new at 5: 3 of them Ready
	if got := images(t, st); got["web:v1"] != 8 || got["web:v2"] != 5 {
		t.Fatalf("before the restart: %v", got)
	}
	running := podsOf(t, st)
	before := replicaSets(t, st)
	// What the controller that is not killed does next.
	clk.t = clk.t.Add(time.Second)
	pass(t, c)
	next, nextPods := replicaSets(t, st), len(podsOf(t, st))

	// kill -9: a new store and controller, the same revision from Git.
	a2, st2 := newApplier(t)
	c2, err := NewCluster(st2, ClusterConfig{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	register(t, c2, "n1")
	register(t, c2, "n2")
	apply(t, a2, clk, "v2", web(10, "web:v2", ""))
	pass(t, c2)
	for _, p := range running { // the agents report what they run
		if err := c2.ReportPod(context.Background(), p.NodeName, p.Object()); err != nil {
			t.Fatal(err)
		}
	}
	if got := replicaSets(t, st2); len(got) != 0 {
		t.Errorf("ReplicaSets during the start-up grace: %v", got)
	}
	clk.t = clk.t.Add(c2.cfg.StartupGrace)
	pass(t, c2)
	if got := replicaSets(t, st2); !cmp.Equal(got, next) {
		t.Errorf("after the restart ReplicaSets %v, want %v as without the restart (before it: %v)", got, next, before)
	}
	if n := len(podsOf(t, st2)); n != nextPods {
		t.Errorf("after the restart %d pods, want %d as without the restart", n, nextPods)
	}
	if total, avail := len(podsOf(t, st2)), available(t, st2, 0, clk.t); total > 13 || avail < 8 {
		t.Errorf("first pass after the restart: %d pods, %d available", total, avail)
	}
	if ev := eventsOf(t, st2, "Deployment/default/web", "ReplicaSetRebuilt"); len(ev) != 2 {
		t.Errorf("rebuild events %q", ev)
	}
	for i := 0; ; i++ {
		if i == 30 {
			t.Fatalf("the rollout did not finish after the restart: %v", images(t, st2))
		}
		reportReady(t, c2, st2, clk.t)
		clk.t = clk.t.Add(time.Second)
		pass(t, c2)
		if total, avail := len(podsOf(t, st2)), available(t, st2, 0, clk.t); total > 13 || avail < 8 {
			t.Fatalf("pass %d after the restart: %d pods, %d available", i, total, avail)
		}
		if got := images(t, st2); got["web:v2"] == 10 && len(got) == 1 {
			break
		}
	}
	if d, _ := deployment(t, st2); d.Annotations[revisionAnnotation] != "2" {
		t.Errorf("revision after the restart %q, want 2", d.Annotations[revisionAnnotation])
	}
}

// TestScaleDuringRollout: a change of replicas in the middle of a rollout
// is spread over the ReplicaSets in proportion, within the bounds.
func TestScaleDuringRollout(t *testing.T) {
	for _, tc := range []struct {
		replicas         int
		wantOld, wantNew int
	}{
		{replicas: 20, wantOld: 15, wantNew: 10}, // 25 = 20 + 25% surge
		{replicas: 5, wantOld: 4, wantNew: 3},    // 7 = 5 + 25% surge
	} {
		t.Run(fmt.Sprint(tc.replicas), func(t *testing.T) {
			c, a, st, clk := rolloutFixture(t, 10, "")
			apply(t, a, clk, "v2", web(10, "web:broken", ""))
			for range 4 {
				pass(t, c)
				reportPods(t, c, st, clk.t, func(p *store.Pod) bool { return p.Base.Spec.Containers[0].Image == "web:v1" })
			}
			if got := images(t, st); got["web:v1"] != 8 || got["web:broken"] != 5 {
				t.Fatalf("stuck rollout: %v", got)
			}
			apply(t, a, clk, "scale", web(tc.replicas, "web:broken", ""))
			pass(t, c)
			if got := images(t, st); got["web:v1"] != tc.wantOld || got["web:broken"] != tc.wantNew {
				t.Errorf("after scaling to %d: %v, want %d old and %d new", tc.replicas, got, tc.wantOld, tc.wantNew)
			}
		})
	}
}

func TestFenceposts(t *testing.T) {
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(n int) *intstr.IntOrString { v := intstr.FromInt32(int32(n)); return &v }
	for _, tc := range []struct {
		replicas               int32
		surge, unavailable     *intstr.IntOrString
		recreate               bool
		wantSurge, wantUnavail int32
	}{
		{replicas: 10, wantSurge: 3, wantUnavail: 2}, // 2.5 up, 2.5 down
		{replicas: 4, wantSurge: 1, wantUnavail: 1},  // exact
		{replicas: 3, wantSurge: 1, wantUnavail: 0},  // 0.75 up and down
		{replicas: 1, wantSurge: 1, wantUnavail: 0},  // 0.25
		{replicas: 0, wantSurge: 0, wantUnavail: 0},  // nothing to roll
		{replicas: 7, surge: pct("50%"), unavailable: pct("50%"), wantSurge: 4, wantUnavail: 3},
		{replicas: 10, surge: num(0), unavailable: pct("5%"), wantSurge: 0, wantUnavail: 1}, // rounds to 0 and 0: one may go
		{replicas: 10, surge: pct("0%"), unavailable: num(2), wantSurge: 0, wantUnavail: 2},
		{replicas: 2, surge: num(5), unavailable: num(5), wantSurge: 5, wantUnavail: 2}, // unavailable capped at replicas
		{replicas: 5, surge: pct("200%"), wantSurge: 10, wantUnavail: 1},
		{replicas: 5, recreate: true, wantSurge: 0, wantUnavail: 0},
	} {
		d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &tc.replicas}}
		if tc.recreate {
			d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType
		} else if tc.surge != nil || tc.unavailable != nil {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: tc.surge, MaxUnavailable: tc.unavailable}
		}
		if s, u := maxSurge(d), maxUnavailable(d); s != tc.wantSurge || u != tc.wantUnavail {
			t.Errorf("%d replicas, surge %v, unavailable %v, recreate %v: got %d and %d, want %d and %d",
				tc.replicas, tc.surge, tc.unavailable, tc.recreate, s, u, tc.wantSurge, tc.wantUnavail)
		}
	}
}

func agentDaemonSet(image, strategy string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
%s  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: c
        image: %s
`, strategy, image)
}

// TestDaemonSetUpdateStrategies rolls a DaemonSet on four nodes from v1 to
// v2, the agents reporting pods Ready between passes, and checks at every
// pass how many nodes lack an available pod and how many pods there are.
func TestDaemonSetUpdateStrategies(t *testing.T) {
	for _, tc := range []struct {
		name            string
		strategy        string
		maxDown, maxPod int // nodes without an available pod; pods in all
	}{
		{name: "default", maxDown: 1, maxPod: 4},
		{name: "maxUnavailable 50%", strategy: "  updateStrategy:\n    rollingUpdate: {maxUnavailable: 50%}\n", maxDown: 2, maxPod: 4},
		{name: "maxSurge", strategy: "  updateStrategy:\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n", maxDown: 0, maxPod: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, a, st, clk := clusterFixture(t)
			for i := range 4 {
				register(t, c, fmt.Sprintf("n%d", i))
			}
			if _, err := a.Apply(revision("v1", map[string]string{"ds.yaml": agentDaemonSet("agent:v1", tc.strategy)}), clk.t); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				settle(t, c)
				reportReady(t, c, st, clk.t)
			}
			if _, err := a.Apply(revision("v2", map[string]string{"ds.yaml": agentDaemonSet("agent:v2", tc.strategy)}), clk.t); err != nil {
				t.Fatal(err)
			}
			sawDown, sawPods := 0, 0
			for i := 0; ; i++ {
				if i == 40 {
					t.Fatalf("not rolled out after 40 passes: %v", images(t, st))
				}
				pass(t, c)
				up := map[string]bool{}
				for _, p := range podsOf(t, st) {
					if podAvailable(p, 0, clk.t) {
						up[p.NodeName] = true
					}
				}
				down, pods := 4-len(up), len(podsOf(t, st))
				if down > tc.maxDown || pods > tc.maxPod {
					t.Fatalf("pass %d: %d nodes without an available pod, %d pods; want at most %d and %d", i, down, pods, tc.maxDown, tc.maxPod)
				}
				sawDown, sawPods = max(sawDown, down), max(sawPods, pods)
				reportReady(t, c, st, clk.t)
				clk.t = clk.t.Add(time.Second)
				if got := images(t, st); got["agent:v2"] == 4 && len(got) == 1 {
					break
				}
			}
			if sawDown != tc.maxDown || sawPods != tc.maxPod {
				t.Errorf("the update reached %d nodes down and %d pods, want exactly %d and %d", sawDown, sawPods, tc.maxDown, tc.maxPod)
			}
			settle(t, c)
			o, _ := st.Snapshot().Object(memdb.NewWatchSet(), "DaemonSet/default/agent")
			s := o.Status.(*appsv1.DaemonSetStatus)
			if s.DesiredNumberScheduled != 4 || s.UpdatedNumberScheduled != 4 || s.NumberAvailable != 4 || s.NumberUnavailable != 0 || s.ObservedGeneration != 1 {
				t.Errorf("status %+v", s)
			}
		})
	}
	t.Run("OnDelete", func(t *testing.T) {
		strategy := "  updateStrategy: {type: OnDelete}\n"
		c, a, st, clk := clusterFixture(t)
		register(t, c, "n1")
		register(t, c, "n2")
		if _, err := a.Apply(revision("v1", map[string]string{"ds.yaml": agentDaemonSet("agent:v1", strategy)}), clk.t); err != nil {
			t.Fatal(err)
		}
		settle(t, c)
		reportReady(t, c, st, clk.t)
		if _, err := a.Apply(revision("v2", map[string]string{"ds.yaml": agentDaemonSet("agent:v2", strategy)}), clk.t); err != nil {
			t.Fatal(err)
		}
		settle(t, c)
		if got := images(t, st); got["agent:v1"] != 2 {
			t.Fatalf("OnDelete replaced pods by itself: %v", got)
		}
		// A pod that ends is replaced from the new template.
		setPhase(t, st, podsOf(t, st)[0].Key, corev1.PodFailed)
		settle(t, c)
		if got := images(t, st); got["agent:v1"] != 1 || got["agent:v2"] != 1 {
			t.Errorf("after one pod ended: %v, want one of each", got)
		}
		o, _ := st.Snapshot().Object(memdb.NewWatchSet(), "DaemonSet/default/agent")
		if s := o.Status.(*appsv1.DaemonSetStatus); s.UpdatedNumberScheduled != 1 || s.DesiredNumberScheduled != 2 {
			t.Errorf("status %+v", s)
		}
	})
}

// TestStatefulSetUpdateStrategies: RollingUpdate replaces one pod at a
// time from the highest ordinal, each once the one above is Ready, down to
// the partition; OnDelete replaces none by itself.
func TestStatefulSetUpdateStrategies(t *testing.T) {
	for _, tc := range []struct {
		name      string
		strategy  string
		wantOrder []string // pods in the order they get the new template
		wantOld   []string // pods left at the old one
	}{
		{name: "RollingUpdate", wantOrder: []string{"db-2", "db-1", "db-0"}},
		{name: "partition", strategy: "  updateStrategy:\n    rollingUpdate: {partition: 1}\n", wantOrder: []string{"db-2", "db-1"}, wantOld: []string{"db-0"}},
		{name: "OnDelete", strategy: "  updateStrategy: {type: OnDelete}\n", wantOld: []string{"db-0", "db-1", "db-2"}},
		{name: "Parallel", strategy: "  podManagementPolicy: Parallel\n", wantOrder: []string{"db-2", "db-1", "db-0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, a, st, clk := clusterFixture(t)
			register(t, c, "n1")
			manifest := func(image string) string {
				return strings.Replace(strings.Replace(statefulSet, "db:v1", image, 1), "  serviceName: db\n", "  serviceName: db\n"+tc.strategy, 1)
			}
			if _, err := a.Apply(revision("v1", map[string]string{"ss.yaml": manifest("db:v1")}), clk.t); err != nil {
				t.Fatal(err)
			}
			for range 4 {
				settle(t, c)
				reportReady(t, c, st, clk.t)
			}
			if got := images(t, st); got["db:v1"] != 3 {
				t.Fatalf("fixture: %v", got)
			}
			if _, err := a.Apply(revision("v2", map[string]string{"ss.yaml": manifest("db:v2")}), clk.t); err != nil {
				t.Fatal(err)
			}
			var order []string
			for i := range 20 {
				pass(t, c)
				notReady := 0
				for _, p := range podsOf(t, st) {
					if !p.Ready {
						notReady++
					}
					if p.Base.Spec.Containers[0].Image == "db:v2" && !slices.Contains(order, p.Name) {
						order = append(order, p.Name)
					}
				}
				if down := 3 - len(podsOf(t, st)) + notReady; down > 1 {
					t.Fatalf("pass %d: %d pods down at once", i, down)
				}
				reportReady(t, c, st, clk.t)
				clk.t = clk.t.Add(time.Second)
			}
			if !cmp.Equal(order, tc.wantOrder, cmpopts.EquateEmpty()) {
				t.Errorf("pods updated in the order %v, want %v", order, tc.wantOrder)
			}
			var old []string
			for _, p := range podsOf(t, st) {
				if p.Base.Spec.Containers[0].Image == "db:v1" {
					old = append(old, p.Name)
				}
			}
			if !cmp.Equal(old, tc.wantOld, cmpopts.EquateEmpty()) {
				t.Errorf("pods left at v1 %v, want %v", old, tc.wantOld)
			}
			o, _ := st.Snapshot().Object(memdb.NewWatchSet(), "StatefulSet/default/db")
			s := o.Status.(*appsv1.StatefulSetStatus)
			if int(s.UpdatedReplicas) != len(tc.wantOrder) || s.ReadyReplicas != 3 || s.ObservedGeneration != 1 ||
				(len(tc.wantOld) == 0) != (s.CurrentRevision == s.UpdateRevision) || int(s.CurrentReplicas) != max(len(tc.wantOld), 3*btoi(len(tc.wantOld) == 0)) {
				t.Errorf("status %+v", s)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestDaemonSetFenceposts(t *testing.T) {
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(n int) *intstr.IntOrString { v := intstr.FromInt32(int32(n)); return &v }
	for _, tc := range []struct {
		desired                int32
		surge, unavailable     *intstr.IntOrString
		wantSurge, wantUnavail int32
	}{
		{desired: 5, wantSurge: 0, wantUnavail: 1},
		{desired: 5, unavailable: pct("30%"), wantSurge: 0, wantUnavail: 2}, // DaemonSets round up
		{desired: 5, surge: pct("10%"), unavailable: num(0), wantSurge: 1, wantUnavail: 0},
		{desired: 5, surge: num(0), unavailable: num(0), wantSurge: 0, wantUnavail: 1},
		{desired: 0, wantSurge: 0, wantUnavail: 1},
	} {
		ds := &appsv1.DaemonSet{}
		if tc.surge != nil || tc.unavailable != nil {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxSurge: tc.surge, MaxUnavailable: tc.unavailable}
		}
		if s, u := daemonSetFenceposts(ds, tc.desired); s != tc.wantSurge || u != tc.wantUnavail {
			t.Errorf("DaemonSet on %d nodes, surge %v, unavailable %v: got %d and %d, want %d and %d",
				tc.desired, tc.surge, tc.unavailable, s, u, tc.wantSurge, tc.wantUnavail)
		}
	}
}
