package gitsync

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/gittest"
)

// reportLatency reports the median and the 90th percentile of ds.
func reportLatency(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(ds[len(ds)/2]), "p50-ms")
	b.ReportMetric(ms(ds[len(ds)*9/10]), "p90-ms")
}

// benchRepo is a repository with 50 manifests under deploy/, as a small
// real source would hold.
func benchRepo(b *testing.B, root string) *gittest.Repo {
	g := gittest.NewRepo(b, root, "repo")
	files := make(map[string]string)
	for i := range 50 {
		files[fmt.Sprintf("deploy/app%02d.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app%02d\n", i)
	}
	g.CommitFiles("base", files)
	return g
}

// BenchmarkLocalCommitToRevision measures a commit in a local repository to
// the Watcher's OnRevision (fsnotify, polling out of the way). The clock
// starts when `git commit` has returned.
func BenchmarkLocalCommitToRevision(b *testing.B) {
	g := benchRepo(b, "")
	r, err := Open(Source{URL: g.Dir, Path: "deploy"}, filepath.Join(b.TempDir(), "cache"), nil)
	if err != nil {
		b.Fatal(err)
	}
	w := &Watcher{Repo: r, Interval: time.Hour}
	revs, _ := runWatcher(b, w)
	waitRevision(b, revs, g.Head(), 10*time.Second)

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		sha := g.CommitFiles("bench", map[string]string{"deploy/app00.yaml": fmt.Sprintf("n: %d\n", i)})
		lat = append(lat, waitRevision(b, revs, sha, 10*time.Second))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkGitDaemonWebhookToRevision measures a commit served by git
// daemon to OnRevision, the Watcher woken by a signed webhook request to
// WebhookHandler (polling out of the way). The clock starts when the commit
// exists and the webhook is about to be sent.
func BenchmarkGitDaemonWebhookToRevision(b *testing.B) {
	d := gittest.StartGitDaemon(b, "")
	g := benchRepo(b, d.Root)
	r, err := Open(Source{URL: d.URL("repo"), Path: "deploy"}, filepath.Join(b.TempDir(), "cache"), nil)
	if err != nil {
		b.Fatal(err)
	}
	w := &Watcher{Repo: r, Interval: time.Hour}
	revs, _ := runWatcher(b, w)
	waitRevision(b, revs, g.Head(), 10*time.Second)

	secret := []byte("bench-secret")
	srv := httptest.NewServer(WebhookHandler(secret, w.Trigger, nil))
	defer srv.Close()
	payload := `{"ref":"refs/heads/main"}`
	sig := sign(string(secret), payload)

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		sha := g.CommitFiles("bench", map[string]string{"deploy/app00.yaml": fmt.Sprintf("n: %d\n", i)})
		start := time.Now()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/v1/hooks/git", bytes.NewBufferString(payload))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("webhook: %s", resp.Status)
		}
		waitRevision(b, revs, sha, 10*time.Second)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkSyncLargeRepo measures Sync of a commit changing one file in a
// repository of 5,000 files under the sub-path (the large-repository
// case): ls-remote, incremental fetch and the file list. The first clone is
// reported as first-sync-ms.
func BenchmarkSyncLargeRepo(b *testing.B) {
	g := gittest.NewRepo(b, "", "repo")
	var script bytes.Buffer
	script.WriteString("commit refs/heads/main\ncommitter T <t@e> 1710000000 +0000\ndata 4\nbase\n")
	for i := range 5000 {
		content := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm%04d\n", i)
		fmt.Fprintf(&script, "M 644 inline deploy/team%02d/cm%04d.yaml\ndata %d\n%s", i%50, i, len(content), content)
	}
	script.WriteString("\n")
	g.GitInput(script.String(), "fast-import", "--quiet")
	g.Git("reset", "-q", "--hard", "main")

	r, err := Open(Source{URL: g.Dir, Path: "deploy"}, filepath.Join(b.TempDir(), "cache"), nil)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	rev, _, err := r.Sync(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	if len(rev.Files) != 5000 {
		b.Fatalf("%d files, want 5000", len(rev.Files))
	}

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		sha := g.CommitFiles("one file", map[string]string{"deploy/team00/cm0000.yaml": fmt.Sprintf("n: %d\n", i)})
		start := time.Now()
		rev, changed, err := r.Sync(context.Background())
		if err != nil || !changed || rev.Commit.SHA != sha {
			b.Fatalf("Sync = %v %v %v, want %s", rev, changed, err, sha)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
	b.ReportMetric(float64(first)/float64(time.Millisecond), "first-sync-ms")
}
