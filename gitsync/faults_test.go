package gitsync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keelson/keelson/internal/gittest"
)

func TestForcePushFollowed(t *testing.T) {
	d := gittest.StartGitDaemon(t, "")
	g := gittest.NewRepo(t, d.Root, "repo")
	a := g.CommitFiles("a", map[string]string{"x.yaml": "a\n"})
	b := g.CommitFiles("b", map[string]string{"x.yaml": "b\n"})
	r, _ := open(t, Source{URL: d.URL("repo")})
	mustSync(t, r, b, true)

	// Rewrite history: b is gone, c replaces it (as after git push --force).
	g.Git("reset", "-q", "--hard", a)
	c := g.CommitFiles("c", map[string]string{"x.yaml": "c\n"})
	rev := mustSync(t, r, c, true)
	if diff := cmp.Diff(map[string]string{"x.yaml": "c\n"}, contents(t, rev)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	// Back to an older commit the clone already has: no fetch needed, still followed.
	g.Git("reset", "-q", "--hard", a)
	mustSync(t, r, a, true)
}

func TestDeletedBranch(t *testing.T) {
	d := gittest.StartGitDaemon(t, "")
	g := gittest.NewRepo(t, d.Root, "repo")
	g.Commit("main")
	g.Git("checkout", "-q", "-b", "feature")
	f1 := g.CommitFiles("f1", map[string]string{"x.yaml": "f1\n"})
	g.Git("checkout", "-q", "main")
	r, _ := open(t, Source{URL: d.URL("repo"), Branch: "feature"})
	mustSync(t, r, f1, true)

	g.Git("branch", "-q", "-D", "feature")
	syncErr(t, r, d.URL("repo"), "refs/heads/feature", "not found")
	if got := r.Last(); got == nil || got.Commit.SHA != f1 {
		t.Fatalf("Last() after the branch was deleted = %v, want %s", got, f1)
	}
	if _, err := r.Resolve(t.Context(), "HEAD"); err != nil {
		t.Errorf("Resolve(HEAD) after the branch was deleted: %v", err)
	}

	g.Git("checkout", "-q", "-b", "feature")
	f2 := g.CommitFiles("f2", map[string]string{"x.yaml": "f2\n"})
	mustSync(t, r, f2, true)
}

func TestServerDown(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T) (root, url string, stop, restart func())
	}{
		{"git daemon", func(t *testing.T) (string, string, func(), func()) {
			d := gittest.StartGitDaemon(t, "")
			return d.Root, d.URL("repo"), d.Stop, d.Start
		}},
		{"http", func(t *testing.T) (string, string, func(), func()) {
			s := gittest.StartHTTPServer(t, "", "u", "p")
			return s.Root, s.URL("repo"), s.Stop, s.Start
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, url, stop, restart := tt.start(t)
			g := gittest.NewRepo(t, root, "repo")
			first := g.Commit("first")
			src := Source{URL: url}
			if strings.HasPrefix(url, "http") {
				t.Setenv("KEELSON_TEST_PW", "p")
				src.Auth = Auth{Username: "u", PasswordEnv: "KEELSON_TEST_PW"}
			}
			r, _ := open(t, src)
			mustSync(t, r, first, true)

			stop()
			second := g.Commit("second")
			syncErr(t, r, url, "refs/heads/main")
			if got := r.Last(); got == nil || got.Commit.SHA != first {
				t.Fatalf("Last() while the server is down = %v, want %s", got, first)
			}
			restart()
			mustSync(t, r, second, true)
		})
	}
}

// TestCorruptCache damages the clone in various ways; a restarted Repo
// (Open on the same directory) must report it and recover by cloning again.
func TestCorruptCache(t *testing.T) {
	packs := func(t *testing.T, cache string) []string {
		m, _ := filepath.Glob(filepath.Join(cache, "objects", "pack", "*.pack"))
		if len(m) == 0 {
			t.Fatal("no pack in the cache")
		}
		return m
	}
	write := func(t *testing.T, name, content string) {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		corrupt func(t *testing.T, cache string)
	}{
		{"garbage HEAD", func(t *testing.T, cache string) { write(t, filepath.Join(cache, "HEAD"), "garbage\n") }},
		{"garbage config", func(t *testing.T, cache string) { write(t, filepath.Join(cache, "config"), "[[[ not a config\n") }},
		{"objects deleted", func(t *testing.T, cache string) {
			if err := os.RemoveAll(filepath.Join(cache, "objects")); err != nil {
				t.Fatal(err)
			}
		}},
		{"pack truncated", func(t *testing.T, cache string) {
			for _, p := range packs(t, cache) {
				if err := os.Truncate(p, 40); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"pack index garbage", func(t *testing.T, cache string) {
			for _, p := range packs(t, cache) {
				write(t, strings.TrimSuffix(p, ".pack")+".idx", "garbage")
			}
		}},
		{"ref to a missing commit", func(t *testing.T, cache string) {
			write(t, filepath.Join(cache, "refs", "heads", "main"), strings.Repeat("1", 40)+"\n")
		}},
		{"cache is a file", func(t *testing.T, cache string) {
			if err := os.RemoveAll(cache); err != nil {
				t.Fatal(err)
			}
			write(t, cache, "garbage")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := gittest.StartGitDaemon(t, "")
			g := gittest.NewRepo(t, d.Root, "repo")
			first := g.CommitFiles("first", map[string]string{"a/x.yaml": "x\n"})
			src := Source{URL: d.URL("repo")}
			cache := filepath.Join(t.TempDir(), "cache")
			log, lb := testLogger(t)
			r, err := Open(src, cache, log)
			if err != nil {
				t.Fatal(err)
			}
			mustSync(t, r, first, true)

			tt.corrupt(t, cache)
			second := g.CommitFiles("second", map[string]string{"a/y.yaml": "y\n"})
			r2, err := Open(src, cache, log)
			if err != nil {
				t.Fatalf("Open on a corrupt cache: %v", err)
			}
			if !strings.Contains(lb.String(), "unusable") {
				t.Errorf("the corrupt cache was not reported; log:\n%s", lb)
			}
			rev := mustSync(t, r2, second, true)
			if diff := cmp.Diff(map[string]string{"a/x.yaml": "x\n", "a/y.yaml": "y\n"}, contents(t, rev)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if _, err := r2.Resolve(t.Context(), "HEAD~1"); err != nil {
				t.Errorf("Resolve(HEAD~1) after recovery: %v", err)
			}
		})
	}
}

// TestCorruptCacheWhileRunning damages the clone under a running Repo.
func TestCorruptCacheWhileRunning(t *testing.T) {
	removePacks := func(t *testing.T, r *Repo) {
		m, _ := filepath.Glob(filepath.Join(r.dir, "objects", "pack", "*"))
		for _, p := range m {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := gittest.StartGitDaemon(t, "")
	g := gittest.NewRepo(t, d.Root, "repo")
	first := g.CommitFiles("first", map[string]string{"x.yaml": "x\n"})
	r, lb := open(t, Source{URL: d.URL("repo")})
	mustSync(t, r, first, true)

	// Damage, then a new commit: the sync that fetches it repairs the clone.
	removePacks(t, r)
	second := g.CommitFiles("second", map[string]string{"y.yaml": "y\n"})
	rev := mustSync(t, r, second, true)
	if diff := cmp.Diff(map[string]string{"x.yaml": "x\n", "y.yaml": "y\n"}, contents(t, rev)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}

	// Damage with no new commit: reading fails, the next sync verifies the
	// clone, reports it, re-clones and hands out the same commit again.
	removePacks(t, r)
	var readErr error
	for _, f := range rev.Files {
		if _, err := f.Read(); err != nil {
			readErr = err
		}
	}
	if readErr == nil {
		t.Skip("go-git still served the objects from memory; nothing to repair")
	}
	if !strings.Contains(readErr.Error(), d.URL("repo")) {
		t.Errorf("read error %q does not name the source", readErr)
	}
	rev = mustSync(t, r, second, true)
	if !strings.Contains(lb.String(), "corrupt") {
		t.Errorf("the corrupt cache was not reported; log:\n%s", lb)
	}
	if diff := cmp.Diff(map[string]string{"x.yaml": "x\n", "y.yaml": "y\n"}, contents(t, rev)); diff != "" {
		t.Errorf("files after repair (-want +got):\n%s", diff)
	}
	mustSync(t, r, second, false)
}
