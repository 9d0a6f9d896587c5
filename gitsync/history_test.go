package gitsync

import (
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keelson/keelson/internal/gittest"
)

func TestSubPathTagAndCommit(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	v1 := g.CommitFiles("v1", map[string]string{
		"clusters/prod/app.yaml":       "prod v1\n",
		"clusters/prod/nested/db.yaml": "db v1\n",
		"clusters/dev/app.yaml":        "dev v1\n",
		"README.md":                    "readme\n",
	})
	g.Git("tag", "v1")                            // lightweight
	g.Git("tag", "-a", "-m", "release 1", "rel1") // annotated
	head := g.CommitFiles("v2", map[string]string{"clusters/prod/app.yaml": "prod v2\n"})

	tests := []struct {
		name    string
		src     Source
		wantSHA string
		wantRef string
		want    map[string]string
	}{
		{"sub-path at branch head", Source{URL: g.Dir, Path: "clusters/prod"}, head, "refs/heads/main",
			map[string]string{"app.yaml": "prod v2\n", "nested/db.yaml": "db v1\n"}},
		{"sub-path with trailing slash", Source{URL: g.Dir, Path: "./clusters/dev/"}, head, "refs/heads/main",
			map[string]string{"app.yaml": "dev v1\n"}},
		{"lightweight tag", Source{URL: g.Dir, Tag: "v1", Path: "clusters/prod"}, v1, "refs/tags/v1",
			map[string]string{"app.yaml": "prod v1\n", "nested/db.yaml": "db v1\n"}},
		{"annotated tag", Source{URL: g.Dir, Tag: "rel1", Path: "clusters/dev"}, v1, "refs/tags/rel1",
			map[string]string{"app.yaml": "dev v1\n"}},
		{"pinned commit", Source{URL: g.FileURL(), Commit: v1, Path: "clusters/dev"}, v1, v1,
			map[string]string{"app.yaml": "dev v1\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := open(t, tt.src)
			rev := mustSync(t, r, tt.wantSHA, true)
			if rev.Ref != tt.wantRef {
				t.Errorf("Ref = %q, want %q", rev.Ref, tt.wantRef)
			}
			if diff := cmp.Diff(tt.want, contents(t, rev)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			mustSync(t, r, tt.wantSHA, false)
		})
	}

	t.Run("missing sub-path", func(t *testing.T) {
		r, _ := open(t, Source{URL: g.Dir, Path: "clusters/staging"})
		syncErr(t, r, g.Dir, "clusters/staging")
	})
	t.Run("unknown commit", func(t *testing.T) {
		r, _ := open(t, Source{URL: g.Dir, Commit: "0123456789012345678901234567890123456789"})
		syncErr(t, r, g.Dir, "0123456789012345678901234567890123456789", "not found")
	})
	t.Run("unknown tag", func(t *testing.T) {
		r, _ := open(t, Source{URL: g.Dir, Tag: "v9"})
		syncErr(t, r, g.Dir, "refs/tags/v9", "not found")
	})
	t.Run("tag moved", func(t *testing.T) {
		r, _ := open(t, Source{URL: g.Dir, Tag: "v1"})
		mustSync(t, r, v1, true)
		g.Git("tag", "-f", "v1", head)
		t.Cleanup(func() { g.Git("tag", "-f", "v1", v1) })
		mustSync(t, r, head, true)
	})
}

func TestDefaultBranch(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	g.Commit("on main")
	g.Git("checkout", "-q", "-b", "trunk")
	head := g.Commit("on trunk")
	g.Git("branch", "-q", "-D", "main")
	r, _ := open(t, Source{URL: g.Dir})
	rev := mustSync(t, r, head, true)
	if rev.Ref != "refs/heads/trunk" {
		t.Errorf("Ref = %q, want the remote HEAD's branch refs/heads/trunk", rev.Ref)
	}
}

func TestFileModes(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	g.WriteFile("app/run.sh", "#!/bin/sh\n")
	g.Git("update-index", "--add", "--chmod=+x", "app/run.sh")
	g.Symlink("../shared/cm.yaml", "app/cm.yaml")
	g.WriteFile("shared/cm.yaml", "kind: ConfigMap\n")
	g.Git("update-index", "--add", "--cacheinfo", "160000,"+g.Commit("base")+",app/sub") // a submodule entry
	head := g.Commit("modes")
	r, _ := open(t, Source{URL: g.Dir, Path: "app"})
	rev := mustSync(t, r, head, true)
	type file struct {
		Path, Target string
		Mode         fs.FileMode
		Size         int64
	}
	var got []file
	for _, f := range rev.Files {
		got = append(got, file{f.Path, f.Target, f.Mode, f.Size})
	}
	want := []file{
		{Path: "cm.yaml", Target: "../shared/cm.yaml", Mode: fs.ModeSymlink, Size: int64(len("../shared/cm.yaml"))},
		{Path: "run.sh", Size: int64(len("#!/bin/sh\n"))},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestLogAndResolve(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	var shas []string
	commit := func(msg string, files map[string]string) {
		shas = append(shas, g.CommitFiles(msg, files))
	}
	commit("c0 outside", map[string]string{"other/x": "0"})
	commit("c1 web", map[string]string{"deploy/web.yaml": "1"})
	commit("c2 db", map[string]string{"deploy/db/db.yaml": "2"})
	commit("c3 outside", map[string]string{"other/x": "3"})
	commit("c4 web", map[string]string{"deploy/web.yaml": "4"})
	g.Git("checkout", "-q", "-b", "side", shas[4])
	commit("c5 side db", map[string]string{"deploy/db/db.yaml": "5"})
	g.Git("checkout", "-q", "main")
	commit("c6 outside", map[string]string{"other/x": "6"})
	g.Git("merge", "-q", "--no-edit", "side") // c7, a merge: differs from c6 at deploy/db
	shas = append(shas, g.Head())
	g.Git("rm", "-q", "deploy/web.yaml")
	shas = append(shas, g.Commit("c8 delete web"))

	r, _ := open(t, Source{URL: g.Dir, Path: "deploy"})
	mustSync(t, r, shas[8], true)

	msgs := func(cs []Commit) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Message)
		}
		return out
	}
	tests := []struct {
		path  string
		limit int
		want  []string
	}{
		{"", 0, []string{"c8 delete web", "c5 side db", "c4 web", "c2 db", "c1 web"}},
		{"web.yaml", 0, []string{"c8 delete web", "c4 web", "c1 web"}},
		{"db", 0, []string{"c5 side db", "c2 db"}},
		{"db/db.yaml", 1, []string{"c5 side db"}},
		{"", 2, []string{"c8 delete web", "c5 side db"}},
		{"missing.yaml", 0, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q limit %d", tt.path, tt.limit), func(t *testing.T) {
			got, err := r.Log(t.Context(), tt.path, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, msgs(got)); diff != "" {
				t.Errorf("Log (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := r.Log(t.Context(), "../x", 0); err == nil {
		t.Error(`Log("../x") = nil error, want one`)
	}

	g.Git("tag", "v1", shas[1])
	resolve := []struct {
		rev     string
		wantSHA string
		want    map[string]string
	}{
		{"HEAD", shas[8], map[string]string{"db/db.yaml": "5"}},
		{"HEAD~1", shas[7], map[string]string{"db/db.yaml": "5", "web.yaml": "4"}},
		{shas[2], shas[2], map[string]string{"db/db.yaml": "2", "web.yaml": "1"}},
		{shas[2][:8], shas[2], map[string]string{"db/db.yaml": "2", "web.yaml": "1"}},
		{"main", shas[8], map[string]string{"db/db.yaml": "5"}},
	}
	for _, tt := range resolve {
		t.Run("Resolve "+tt.rev, func(t *testing.T) {
			rev, err := r.Resolve(t.Context(), tt.rev)
			if err != nil {
				t.Fatal(err)
			}
			if rev.Commit.SHA != tt.wantSHA {
				t.Errorf("Resolve(%q) = %s, want %s", tt.rev, rev.Commit.SHA, tt.wantSHA)
			}
			if diff := cmp.Diff(tt.want, contents(t, rev)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := r.Resolve(t.Context(), "no-such-branch"); err == nil {
		t.Error("Resolve(no-such-branch) = nil error, want one")
	}
}

// TestLogManyCommits checks that Log stays fast on a long history.
func TestLogManyCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 400 commits")
	}
	g := gittest.NewRepo(t, "", "repo")
	for i := range 40 {
		g.WriteFile(fmt.Sprintf("apps/app%d.yaml", i), "x")
	}
	g.Commit("base")
	// Many commits in one git process: fast-import.
	script := ""
	for i := range 400 {
		from := ""
		if i == 0 {
			from = "from refs/heads/main^0\n"
		}
		script += fmt.Sprintf("commit refs/heads/main\ncommitter T <t@e> %d +0000\ndata 3\nc%02d\n%sM 644 inline apps/app%d.yaml\ndata 2\n%02d\n\n", 1710000000+i, i%100, from, i%40, i%100)
	}
	g.GitInput(script, "fast-import", "--quiet")
	r, _ := open(t, Source{URL: g.Dir, Path: "apps"})
	if _, _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := r.Log(t.Context(), "app7.yaml", 0)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if len(got) != 11 { // 10 edits + base
		t.Errorf("Log(app7.yaml) = %d commits, want 11", len(got))
	}
	t.Logf("Log over 401 commits took %v", took)
	if took.Seconds() > 2 {
		t.Errorf("Log over 401 commits took %v, want < 2s", took)
	}
}
