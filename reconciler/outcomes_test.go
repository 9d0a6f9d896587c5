package reconciler

import (
	"strings"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/keelson/keelson/store"
)

// revisionBySHA is the recorded revision of a commit.
func revisionBySHA(t *testing.T, st *store.Store, sha string) *store.Revision {
	t.Helper()
	revs, err := st.Snapshot().Revisions(memdb.NewWatchSet(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range revs {
		if r.SHA == sha {
			return r
		}
	}
	t.Fatalf("no revision %s", sha)
	return nil
}

// rollOn runs passes, reporting pods Ready, with the clock moving a second
// each time, until the commit's health is final or the passes run out.
func rollOn(t *testing.T, c *Cluster, st *store.Store, clk *clock, sha string, passes int, ready bool) *store.Revision {
	t.Helper()
	for range passes {
		pass(t, c)
		if ready {
			reportReady(t, c, st, clk.t)
		}
		clk.t = clk.t.Add(time.Second)
		if r := revisionBySHA(t, st, sha); r.Health.Final() {
			return r
		}
	}
	return revisionBySHA(t, st, sha)
}

// TestCommitOutcomes follows commits from Git to running: a rollout that
// completes is Healthy with its timings in order; one replaced before it
// finished by a revert is RolledBack; one whose pods never become ready is
// Degraded once its deadline passes, with the reason.
func TestCommitOutcomes(t *testing.T) {
	c, a, st, clk := rolloutFixture(t, 4, "  progressDeadlineSeconds: 30\n")
	v1 := revisionBySHA(t, st, "v1")
	if v1.Health != store.RolloutHealthy || len(v1.Rollouts) != 1 || v1.Rollouts[0].Object != "Deployment/default/web" {
		t.Fatalf("v1: health %s, rollouts %+v", v1.Health, v1.Rollouts)
	}
	r := v1.Rollouts[0]
	if r.Scheduled.IsZero() || r.Started.Before(r.Scheduled) || r.Ready.Before(r.Started) || !strings.Contains(strings.Join(r.Images, ","), "web:v1") {
		t.Errorf("v1 rollout timings or images: %+v", r)
	}

	// v2, reverted (v1's template again) before it completes.
	apply(t, a, clk, "v2", web(4, "web:v2", "  progressDeadlineSeconds: 30\n"))
	pass(t, c)
	if got := revisionBySHA(t, st, "v2"); got.Health != store.RolloutProgressing {
		t.Fatalf("v2 right after apply: %s", got.Health)
	}
	apply(t, a, clk, "revert-v2", web(4, "web:v1", "  progressDeadlineSeconds: 30\n"))
	pass(t, c)
	if got := revisionBySHA(t, st, "v2"); got.Health != store.RolloutRolledBack || got.Rollouts[0].Finished.IsZero() {
		t.Errorf("v2 after its revert: %s %+v", got.Health, got.Rollouts)
	}
	if got := rollOn(t, c, st, clk, "revert-v2", 30, true); got.Health != store.RolloutHealthy {
		t.Errorf("the revert: %s %+v", got.Health, got.Rollouts)
	}

	// v3 never becomes ready: Degraded after its deadline, old pods serving.
	apply(t, a, clk, "v3", web(4, "web:broken", "  progressDeadlineSeconds: 30\n"))
	got := rollOn(t, c, st, clk, "v3", 60, false)
	if got.Health != store.RolloutDegraded || !strings.Contains(got.Rollouts[0].Reason, "progress") {
		t.Errorf("v3: %s %+v", got.Health, got.Rollouts)
	}
	if imgs := images(t, st); imgs["web:v1"] < 3 {
		t.Errorf("while v3 fails, pods per image %v: the old version must keep serving", imgs)
	}
	// A commit that changes no workload has no health.
	if _, err := a.Apply(revision("cm", map[string]string{"web.yaml": web(4, "web:broken", "  progressDeadlineSeconds: 30\n"), "cm.yaml": cmA}), clk.t); err != nil {
		t.Fatal(err)
	}
	if got := revisionBySHA(t, st, "cm"); got.Health != "" || len(got.Rollouts) != 0 {
		t.Errorf("a ConfigMap commit: %s %+v", got.Health, got.Rollouts)
	}
}

// TestAutoRollback: with the annotation on, a rollout that misses its
// deadline returns to the previous template on its own and stays there;
// the commit is Degraded; a new commit changing the Deployment is tried.
func TestAutoRollback(t *testing.T) {
	spec := "  progressDeadlineSeconds: 20\n"
	withAnnotation := func(m string) string {
		return strings.Replace(m, "  name: web\n", "  name: web\n  annotations: {keelson.dev/auto-rollback: \"true\"}\n", 1)
	}
	c, a, st, clk := rolloutFixture(t, 4, spec)
	apply(t, a, clk, "v1a", withAnnotation(web(4, "web:v1", spec)))
	rollOn(t, c, st, clk, "v1a", 10, true)
	apply(t, a, clk, "broken", withAnnotation(web(4, "web:broken", spec)))
	got := rollOn(t, c, st, clk, "broken", 60, false)
	if got.Health != store.RolloutDegraded {
		t.Fatalf("the broken commit: %s", got.Health)
	}
	// The rollback: v1 back on every replica, the broken ReplicaSet at 0.
	for range 20 {
		pass(t, c)
		reportReady(t, c, st, clk.t)
		clk.t = clk.t.Add(time.Second)
	}
	if imgs := images(t, st); imgs["web:v1"] != 4 || imgs["web:broken"] != 0 {
		t.Errorf("after the rollback, pods per image %v; want 4 of web:v1", imgs)
	}
	evs, _ := st.Snapshot().Events(memdb.NewWatchSet(), "Deployment/default/web")
	found := false
	for _, e := range evs {
		if e.Reason == "RolledBack" {
			found = true
		}
	}
	if !found {
		t.Errorf("no RolledBack event: %+v", evs)
	}
	// It stays rolled back while Git keeps the failed template.
	for range 10 {
		pass(t, c)
		clk.t = clk.t.Add(time.Second)
	}
	if imgs := images(t, st); imgs["web:broken"] != 0 {
		t.Errorf("the failed template was tried again: %v", imgs)
	}
	// A new commit changing the Deployment is rolled out.
	apply(t, a, clk, "v3", withAnnotation(web(4, "web:v3", spec)))
	if got := rollOn(t, c, st, clk, "v3", 40, true); got.Health != store.RolloutHealthy {
		t.Errorf("the next commit: %s", got.Health)
	}
	if imgs := images(t, st); imgs["web:v3"] != 4 {
		t.Errorf("after the next commit, pods per image %v", imgs)
	}
}
