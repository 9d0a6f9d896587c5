package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

func TestNotesToWrite(t *testing.T) {
	fetched := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return fetched.Add(d) }
	healthy := &store.Revision{SHA: "aaaa", Status: store.RevisionApplied, Health: store.RolloutHealthy, FetchedAt: fetched, AppliedAt: at(12 * time.Millisecond),
		Rollouts: []store.Rollout{
			{Object: "Deployment/shop/web", Images: []string{"web:v2"}, Outcome: store.RolloutHealthy, Scheduled: at(210 * time.Millisecond), Started: at(640 * time.Millisecond), Ready: at(1400 * time.Millisecond)},
			{Object: "DaemonSet/shop/agent", Images: []string{"agent:v1", "proxy:1"}, Outcome: store.RolloutHealthy, Scheduled: at(100 * time.Millisecond), Started: at(300 * time.Millisecond), Ready: at(900 * time.Millisecond)},
		}}
	degraded := &store.Revision{SHA: "bbbb", Status: store.RevisionApplied, Health: store.RolloutDegraded, FetchedAt: fetched, AppliedAt: at(time.Millisecond),
		Rollouts: []store.Rollout{
			{Object: "DaemonSet/shop/agent", Outcome: store.RolloutProgressing},
			{Object: "Deployment/shop/web", Images: []string{"web:v3"}, Outcome: store.RolloutDegraded, Reason: `ReplicaSet "web-abc" has timed out progressing.`},
		}}
	rolledBack := &store.Revision{SHA: "cccc", Status: store.RevisionApplied, Health: store.RolloutRolledBack,
		Rollouts: []store.Rollout{{Object: "Deployment/shop/web", Images: []string{"web:v4"}, Outcome: store.RolloutRolledBack, Reason: "a later commit brought the previous template back"}}}
	progressing := &store.Revision{SHA: "dddd", Status: store.RevisionApplied, Health: store.RolloutProgressing,
		Rollouts: []store.Rollout{{Object: "Deployment/shop/web", Outcome: store.RolloutProgressing}}}
	noWorkload := &store.Revision{SHA: "eeee", Status: store.RevisionApplied}
	rejected := &store.Revision{SHA: "ffff", Status: store.RevisionFailed, Errors: []manifest.Issue{
		{File: "web.yaml", Line: 12, Object: "Deployment/shop/web", Field: "spec.replicas", Message: "Invalid value: -1"},
		{File: "db.yaml", Message: "not YAML"},
	}}

	want := map[string]string{
		"aaaa": "keelson: Healthy (applied 12ms, scheduled 210ms, started 640ms, ready 1.4s after fetch)\n" +
			"Deployment/shop/web: Healthy, image web:v2\n" +
			"DaemonSet/shop/agent: Healthy, images agent:v1, proxy:1\n",
		"bbbb": "keelson: Degraded — Deployment/shop/web: ReplicaSet \"web-abc\" has timed out progressing.\n" +
			"DaemonSet/shop/agent: Progressing\n" +
			"Deployment/shop/web: Degraded, image web:v3 — ReplicaSet \"web-abc\" has timed out progressing.\n",
		"cccc": "keelson: RolledBack — Deployment/shop/web: a later commit brought the previous template back\n" +
			"Deployment/shop/web: RolledBack, image web:v4 — a later commit brought the previous template back\n",
		"ffff": "keelson: Rejected — web.yaml:12: Deployment/shop/web: spec.replicas: Invalid value: -1\n" +
			"error: web.yaml:12: Deployment/shop/web: spec.replicas: Invalid value: -1\n" +
			"error: db.yaml: not YAML\n",
	}
	revs := []*store.Revision{rejected, noWorkload, progressing, rolledBack, degraded, healthy}
	if diff := cmp.Diff(want, notesToWrite(revs, nil)); diff != "" {
		t.Errorf("notesToWrite (-want +got):\n%s", diff)
	}

	// Notes found at start are kept; notes this process wrote are
	// rewritten only when the outcome changed; the newest record decides.
	written := map[string]string{"aaaa": "", "bbbb": want["bbbb"], "cccc": "keelson: Degraded\n"}
	again := &store.Revision{SHA: "ffff", Status: store.RevisionApplied, Health: store.RolloutProgressing, Rollouts: progressing.Rollouts}
	got := notesToWrite(append([]*store.Revision{again}, revs...), written)
	if diff := cmp.Diff(map[string]string{"cccc": want["cccc"]}, got); diff != "" {
		t.Errorf("notesToWrite with notes written (-want +got):\n%s", diff)
	}
}

// historyController runs a controller with --write-notes until stop.
func historyController(t *testing.T, repoDir, dataDir string) (server string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	var wg sync.WaitGroup
	var logs syncBuffer
	o := controllerOptions{dataDir: dataDir, listen: "127.0.0.1:0", interval: time.Hour, logLevel: "debug", writeNotes: true,
		onListen: func(a string) { addr <- a }}
	o.src.URL = repoDir
	wg.Go(func() {
		if err := runController(ctx, o, &logs); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	}
	t.Cleanup(stop)
	select {
	case a := <-addr:
		return "http://" + a, stop
	case <-time.After(30 * time.Second):
		t.Fatal("controller did not start listening")
		return "", nil
	}
}

func historyApp(name, image, spec, podSpec string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: 2
  selector: {matchLabels: {app: %s}}
%s  template:
    metadata: {labels: {app: %s}}
    spec:
%s      containers:
      - {name: c, image: %q}
`, name, name, spec, name, podSpec, image)
}

// TestRolloutHistoryAndNotes runs a controller with --write-notes on a
// local repository and simulated nodes through v1 → v2 → v3 (broken) →
// revert v3 → revert v2: the controller writes each commit's outcome in its
// note (git shows them), rollout history lists the changes with their
// outcomes from the controller's records, and after a restart from the
// notes.
func TestRolloutHistoryAndNotes(t *testing.T) {
	repo := gittest.NewRepo(t, "", "shop")
	v1 := repo.CommitFiles("web v1", map[string]string{"web.yaml": historyApp("web", "web:v1", "", ""), "api.yaml": historyApp("api", "api:v1", "", "")})
	// An earlier controller noted v1.
	repo.Git("notes", "--ref=keelson", "add", "-m", "keelson: Healthy (ready 1s after fetch)\nDeployment/default/web: Healthy, image web:v1", v1)
	v2 := repo.CommitFiles("web v2", map[string]string{"web.yaml": historyApp("web", "web:v2", "", "")})
	repo.CommitFiles("api v2", map[string]string{"api.yaml": historyApp("api", "api:v2", "", "")})

	dataDir := t.TempDir()
	server, stop := historyController(t, repo.Dir, dataDir)
	c, stopSim := simulatedNodes(t, server, dataDir)

	// final waits until the commit's record has a final health.
	final := func(sha string, want store.RolloutOutcome) {
		t.Helper()
		eventually(t, "commit "+sha[:8]+" "+string(want), func() string {
			revs, err := c.Revisions(context.Background(), 0, client.Query{})
			if err != nil {
				return err.Error()
			}
			for _, r := range revs.Items {
				if r.SHA == sha {
					if r.Health != want {
						return fmt.Sprintf("health %q", r.Health)
					}
					return ""
				}
			}
			return "not applied yet"
		})
	}
	head := repo.Head()
	final(head, store.RolloutHealthy)
	v3 := repo.CommitFiles("web v3", map[string]string{"web.yaml": historyApp("web", "web:v3", "  progressDeadlineSeconds: 2\n", "      nodeSelector: {keelson.dev/nowhere: \"true\"}\n")})
	final(v3, store.RolloutDegraded)
	repo.Git("revert", "--no-edit", v3)
	revert3 := repo.Head()
	final(revert3, store.RolloutHealthy)
	repo.Git("revert", "--no-edit", v2)
	revert2 := repo.Head()
	final(revert2, store.RolloutHealthy)

	// The notes arrive in the repository, where git shows them.
	note := func(sha string) string { return repo.Git("log", "-1", "--notes=keelson", "--format=%N", sha) }
	eventually(t, "notes written", func() string {
		for _, sha := range []string{head, v3, revert3, revert2} {
			if note(sha) == "" {
				return "no note on " + sha[:8]
			}
		}
		return ""
	})
	if got := note(v1); got != "keelson: Healthy (ready 1s after fetch)\nDeployment/default/web: Healthy, image web:v1" {
		t.Errorf("the note an earlier controller wrote changed: %q", got)
	}
	if got := note(v3); !strings.HasPrefix(got, "keelson: Degraded — Deployment/default/web: ReplicaSet \"web-") ||
		!strings.Contains(got, "\nDeployment/default/web: Degraded, image web:v3 — ReplicaSet") {
		t.Errorf("note of v3:\n%s", got)
	}
	if got := note(revert2); !strings.HasPrefix(got, "keelson: Healthy (applied ") || !strings.Contains(got, "\nDeployment/default/web: Healthy, image web:v1") {
		t.Errorf("note of the revert of v2:\n%s", got)
	}
	if got := note(head); !strings.Contains(got, "Deployment/default/api: Healthy, image api:v2") {
		t.Errorf("note of the commit applied at start:\n%s", got)
	}
	t.Logf("git log --notes=keelson:\n%s", repo.Git("log", "--notes=keelson", "--format=%h %s%n%N"))

	type entry struct {
		SHA, Change, Outcome, From string
		Images                     []string
		Current                    bool
	}
	history := func(args ...string) ([]entry, []api.HistoryEntry) {
		t.Helper()
		code, out, errOut := cli(t, append([]string{"rollout", "history", "--server", server, "-o", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("rollout history: exit %d: %s", code, errOut)
		}
		var h api.History
		if err := json.Unmarshal([]byte(out), &h); err != nil {
			t.Fatal(err)
		}
		var short []entry
		for _, e := range h.Items {
			short = append(short, entry{e.SHA, e.Change, e.Outcome, e.From, e.Images, e.Current})
		}
		return short, h.Items
	}
	got, items := history("deploy/web")
	want := []entry{
		{revert2, "Changed", "Healthy", "controller", []string{"web:v1"}, true},
		{revert3, "Changed", "Healthy", "controller", []string{"web:v2"}, false},
		{v3, "Changed", "Degraded", "controller", []string{"web:v3"}, false},
		{v2, "Changed", "Unknown", "", []string{"web:v2"}, false}, // before the controller started, and no note
		{v1, "Added", "Healthy", "note", []string{"web:v1"}, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if r := items[2].Reason; !strings.Contains(r, "has timed out progressing") {
		t.Errorf("reason of v3 = %q", r)
	}

	// The table.
	code, out, errOut := cli(t, "rollout", "history", "--server", server, "deployment", "web")
	if code != 0 {
		t.Fatalf("rollout history: exit %d: %s", code, errOut)
	}
	t.Logf("rollout history:\n%s", out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 8 || lines[0] != `deployment "web" in namespace "default", declared in web.yaml` ||
		!strings.HasPrefix(strings.TrimSpace(lines[1]), "COMMIT") ||
		!strings.HasPrefix(lines[2], "*") || !strings.Contains(lines[2], revert2[:12]) || !strings.Contains(lines[2], "Healthy") || !strings.HasSuffix(lines[2], `Revert "web v2"`) ||
		!strings.Contains(lines[4], "Degraded") || !strings.Contains(lines[5], "has timed out progressing") ||
		!strings.Contains(lines[6], "Unknown") || !strings.Contains(lines[7], "Healthy (note)") || !strings.Contains(lines[7], "added") {
		t.Errorf("rollout history table:\n%s", out)
	}
	if i := strings.Index(lines[1], "MESSAGE"); i < 0 || strings.Index(lines[2], `Revert "web v2"`) != i || strings.Index(lines[5], "ReplicaSet") != i {
		t.Errorf("columns not aligned:\n%s", out)
	}
	if code, _, errOut := cli(t, "rollout", "history", "--server", server, "deploy/web", "--limit", "2"); code != 0 {
		t.Errorf("--limit 2: exit %d: %s", code, errOut)
	}
	for _, args := range [][]string{{"svc/web"}, {"deploy/nope"}, {"deploy"}, {"deploy/web", "-n", "other"}} {
		if code, _, errOut := cli(t, append([]string{"rollout", "history", "--server", server}, args...)...); code != 1 || errOut == "" {
			t.Errorf("rollout history %v: exit %d, stderr %q; want an error", args, code, errOut)
		}
	}

	// After a restart the controller's records start again: the outcomes
	// of the commits before come from their notes.
	stopSim()
	stop()
	server, _ = historyController(t, repo.Dir, dataDir)
	c, err := client.New(server)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "restarted controller applied "+revert2[:8], func() string {
		st, err := c.Status(context.Background(), client.Query{})
		if err != nil || st.Applied == nil || st.Applied.SHA != revert2 {
			return fmt.Sprintf("%v %v", st, err)
		}
		return ""
	})
	got, _ = history("deploy/web")
	want = []entry{
		{revert2, "Changed", "Progressing", "controller", []string{"web:v1"}, true}, // no nodes now
		{revert3, "Changed", "Healthy", "note", []string{"web:v2"}, false},
		{v3, "Changed", "Degraded", "note", []string{"web:v3"}, false},
		{v2, "Changed", "Unknown", "", []string{"web:v2"}, false},
		{v1, "Added", "Healthy", "note", []string{"web:v1"}, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history after a restart (-want +got):\n%s", diff)
	}
}
