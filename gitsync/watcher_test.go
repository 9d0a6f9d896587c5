package gitsync

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/gittest"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		failures int
		interval time.Duration
		want     time.Duration
	}{
		{1, 30 * time.Second, time.Second},
		{2, 30 * time.Second, 2 * time.Second},
		{4, 30 * time.Second, 8 * time.Second},
		{5, 30 * time.Second, 16 * time.Second},
		{6, 30 * time.Second, 30 * time.Second},
		{60, 30 * time.Second, 30 * time.Second},
		{1, 200 * time.Millisecond, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := backoff(tt.failures, tt.interval); got != tt.want {
			t.Errorf("backoff(%d, %v) = %v, want %v", tt.failures, tt.interval, got, tt.want)
		}
	}
}

// runWatcher runs w until the test ends and returns a channel of the
// revisions and one of the errors it reports.
func runWatcher(t testing.TB, w *Watcher) (<-chan *Revision, <-chan error) {
	t.Helper()
	revs := make(chan *Revision, 100)
	errs := make(chan error, 100)
	w.OnRevision = func(_ context.Context, rev *Revision) { revs <- rev }
	w.OnError = func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait() // Run returns only after its goroutines have exited
	})
	return revs, errs
}

func waitRevision(t testing.TB, revs <-chan *Revision, sha string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(within)
	for {
		select {
		case rev := <-revs:
			if rev.Commit.SHA == sha {
				return time.Since(start)
			}
		case <-deadline:
			t.Fatalf("revision %s not seen within %v", sha, within)
		}
	}
}

// TestWatcherLocalCommit checks that fsnotify makes a commit in a local
// repository visible well within a second, with polling out of the way.
func TestWatcherLocalCommit(t *testing.T) {
	for _, bare := range []bool{false, true} {
		name := "work tree"
		if bare {
			name = "bare"
		}
		t.Run(name, func(t *testing.T) {
			g := gittest.NewRepo(t, "", "repo")
			first := g.CommitFiles("first", map[string]string{"a.yaml": "1"})
			url := g.Dir
			if bare {
				// A bare repository pushed to, as a local Git server would be.
				bareDir := t.TempDir() + "/bare.git"
				g.Git("clone", "-q", "--bare", g.Dir, bareDir)
				g.Git("remote", "add", "origin", bareDir)
				url = "file://" + bareDir
			}
			r, _ := open(t, Source{URL: url})
			log, _ := testLogger(t)
			w := &Watcher{Repo: r, Interval: time.Hour, Log: log}
			revs, _ := runWatcher(t, w)
			waitRevision(t, revs, first, 5*time.Second)

			for i := range 3 {
				sha := g.CommitFiles("next", map[string]string{"a.yaml": string(rune('2' + i))})
				if bare {
					g.Git("push", "-q", "origin", "main")
				}
				took := waitRevision(t, revs, sha, time.Second)
				t.Logf("commit %d seen after %v", i, took)
			}
			// A new branch directory under refs/heads/ is watched too.
			g.Git("checkout", "-q", "-b", "feature/x")
			g.Commit("on a branch")
			g.Git("checkout", "-q", "main")
			if bare {
				g.Git("push", "-q", "origin", "feature/x", "main")
			}
			sha := g.Commit("after the branch")
			if bare {
				g.Git("push", "-q", "origin", "main")
			}
			waitRevision(t, revs, sha, time.Second)
		})
	}
}

// TestWatcherErrorsAndTrigger checks that errors are reported, that the
// last revision stays, and that a Trigger syncs at once when the server is
// back, whatever the back-off.
func TestWatcherErrorsAndTrigger(t *testing.T) {
	d := gittest.StartGitDaemon(t, "")
	g := gittest.NewRepo(t, d.Root, "repo")
	first := g.Commit("first")
	r, _ := open(t, Source{URL: d.URL("repo")})
	log, _ := testLogger(t)
	w := &Watcher{Repo: r, Interval: time.Hour, Log: log}
	w.Trigger() // before Run: merged with the initial sync
	revs, errs := runWatcher(t, w)
	waitRevision(t, revs, first, 5*time.Second)

	d.Stop()
	w.Trigger()
	select {
	case err := <-errs:
		t.Logf("reported: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no error reported while the server is down")
	}
	if got := r.Last(); got == nil || got.Commit.SHA != first {
		t.Fatalf("Last() = %v, want %s", got, first)
	}

	d.Start()
	second := g.Commit("second")
	w.Trigger()
	waitRevision(t, revs, second, 2*time.Second)

	// Nothing new: a trigger does not call OnRevision.
	w.Trigger()
	select {
	case rev := <-revs:
		t.Errorf("OnRevision(%s) without a new commit", rev.Commit.SHA)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestWatcherPolls checks the poll interval alone picks up a commit.
func TestWatcherPolls(t *testing.T) {
	d := gittest.StartGitDaemon(t, "")
	g := gittest.NewRepo(t, d.Root, "repo")
	first := g.Commit("first")
	r, _ := open(t, Source{URL: d.URL("repo")})
	w := &Watcher{Repo: r, Interval: 50 * time.Millisecond}
	revs, _ := runWatcher(t, w)
	waitRevision(t, revs, first, 5*time.Second)
	second := g.Commit("second")
	waitRevision(t, revs, second, 5*time.Second)
}
