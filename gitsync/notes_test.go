package gitsync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keelson/keelson/internal/gittest"
)

func openNotes(t *testing.T, src Source) *Notes {
	t.Helper()
	log, _ := testLogger(t)
	n, err := OpenNotes(src, filepath.Join(t.TempDir(), "notes"), log)
	if err != nil {
		t.Fatal(err)
	}
	n.now = func() time.Time { return time.Date(2024, 2, 1, 12, 0, 0, 0, time.UTC) }
	return n
}

// gitNote is the keelson note of commit sha as git shows it ("" for none).
func gitNote(g *gittest.Repo, sha string) string {
	return g.Git("log", "-1", "--notes=keelson", "--format=%N", sha)
}

func healthy(image string) string {
	return OutcomeNote{Health: "Healthy", Summary: "(applied 12ms after fetch)",
		Objects: []NoteObject{{Object: "Deployment/shop/web", Outcome: "Healthy", Images: []string{image}}}}.String()
}

// TestNotesLocal writes notes into a local repository, next to notes git
// wrote, and reads them back with git and with Read.
func TestNotesLocal(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	c0 := g.CommitFiles("c0", map[string]string{"a.yaml": "0"})
	c1 := g.CommitFiles("c1", map[string]string{"a.yaml": "1"})
	c2 := g.CommitFiles("c2", map[string]string{"a.yaml": "2"})
	c3 := g.CommitFiles("c3", map[string]string{"a.yaml": "3"})
	// Someone annotated two commits with git before Keelson.
	g.Git("notes", "--ref=keelson", "add", "-m", "reviewed by alice", c0)
	g.Git("notes", "--ref=keelson", "add", "-m", "deployed by hand", c3)
	before := g.Git("rev-parse", "refs/notes/keelson")

	n := openNotes(t, Source{URL: g.Dir})
	if err := n.Add(t.Context(), map[string]string{c1: healthy("web:v1")}); err != nil {
		t.Fatal(err)
	}
	if got, want := gitNote(g, c1), strings.TrimSpace(healthy("web:v1")); got != want {
		t.Errorf("git log --notes=keelson of c1:\n%s\nwant:\n%s", got, want)
	}
	// A second note keeps the first, and a note on a commit git annotated
	// keeps git's text before Keelson's.
	if err := n.Add(t.Context(), map[string]string{c2: healthy("web:v2"), c3: healthy("web:v3")}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		c0: "reviewed by alice",
		c1: strings.TrimSpace(healthy("web:v1")),
		c2: strings.TrimSpace(healthy("web:v2")),
		c3: "deployed by hand\n\n" + strings.TrimSpace(healthy("web:v3")),
	}
	got := map[string]string{}
	for sha := range want {
		got[sha] = gitNote(g, sha)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notes as git shows them (-want +got):\n%s", diff)
	}
	// The notes history goes on from git's: two notes commits on top.
	if got := g.Git("rev-list", "--count", before+"..refs/notes/keelson"); got != "2" {
		t.Errorf("notes commits after git's: %s, want 2", got)
	}
	if out := g.Git("fsck", "--strict", "--no-progress"); out != "" {
		t.Errorf("git fsck: %s", out)
	}
	// Writing the same again changes nothing; replacing Keelson's text
	// keeps git's.
	tip := g.Git("rev-parse", "refs/notes/keelson")
	if err := n.Add(t.Context(), map[string]string{c2: healthy("web:v2")}); err != nil {
		t.Fatal(err)
	}
	if g.Git("rev-parse", "refs/notes/keelson") != tip {
		t.Error("adding an unchanged note made a notes commit")
	}
	if err := n.Add(t.Context(), map[string]string{c3: "keelson: Degraded — it broke\n"}); err != nil {
		t.Fatal(err)
	}
	if got, want := gitNote(g, c3), "deployed by hand\n\nkeelson: Degraded — it broke"; got != want {
		t.Errorf("replaced note of c3 = %q, want %q", got, want)
	}

	read, err := n.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != 4 || read[c1] != healthy("web:v1") {
		t.Errorf("Read = %d notes, c1 %q", len(read), read[c1])
	}
	if p, ok := ParseOutcomeNote(read[c3]); !ok || p.Health != "Degraded" {
		t.Errorf("ParseOutcomeNote(c3) = %+v, %v", p, ok)
	}

	// A force-push that drops c3 from the branch keeps its note.
	g.Git("reset", "-q", "--hard", c2)
	if got := gitNote(g, c3); !strings.Contains(got, "it broke") {
		t.Errorf("note of a commit no longer on the branch: %q", got)
	}

	// While git holds the ref's lock, Add waits, then gives up.
	lock := filepath.Join(g.Dir, ".git", "refs", "notes", "keelson.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err = n.Add(t.Context(), map[string]string{c0: healthy("web:v0")})
	if !errors.Is(err, errNotesLocked) {
		t.Errorf("Add with the ref locked = %v, want %v", err, errNotesLocked)
	}
	os.Remove(lock)
	if err := n.Add(t.Context(), map[string]string{c0: healthy("web:v0")}); err != nil {
		t.Fatal(err)
	}
	if got := gitNote(g, c0); !strings.HasPrefix(got, "reviewed by alice\n\nkeelson: Healthy") {
		t.Errorf("note of c0 = %q", got)
	}
}

// TestNotesFanout writes more notes than fit a flat tree, and reads a large
// notes tree that git made.
func TestNotesFanout(t *testing.T) {
	const count = 300
	g := gittest.NewRepo(t, "", "repo")
	var script strings.Builder
	for i := range count {
		fmt.Fprintf(&script, "commit refs/heads/main\nmark :%d\ncommitter T <t@e> %d +0000\ndata 3\nc%02d\n", i+1, 1710000000+i, i%100)
		if i > 0 {
			fmt.Fprintf(&script, "from :%d\n", i)
		}
		fmt.Fprintf(&script, "M 644 inline a.yaml\ndata 3\n%03d\n\n", i)
	}
	// git's own notes on the first half, written by fast-import, which
	// fans the tree out.
	script.WriteString("commit refs/notes/keelson\ncommitter T <t@e> 1720000000 +0000\ndata 5\nnotes\n")
	for i := range count / 2 {
		fmt.Fprintf(&script, "N inline :%d\ndata 4\ngit\n\n", i+1)
	}
	g.GitInput(script.String(), "fast-import", "--quiet")
	shas := strings.Fields(g.Git("rev-list", "--reverse", "main"))
	if len(shas) != count {
		t.Fatalf("%d commits, want %d", len(shas), count)
	}

	n := openNotes(t, Source{URL: g.Dir})
	read, err := n.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != count/2 || read[shas[0]] != "git\n" {
		t.Fatalf("Read of git's fanned-out notes: %d notes (want %d), first %q", len(read), count/2, read[shas[0]])
	}
	add := map[string]string{}
	for _, sha := range shas[count/2:] {
		add[sha] = healthy("web:" + sha[:6])
	}
	if err := n.Add(t.Context(), add); err != nil {
		t.Fatal(err)
	}
	// Our tree is fanned out too.
	root := g.Git("ls-tree", "refs/notes/keelson")
	if !strings.Contains(root, "tree ") || strings.Count(root, "\n")+1 > 256 {
		t.Errorf("notes tree of %d notes is not split by the first two digits:\n%.300s", count, root)
	}
	if got := g.Git("notes", "--ref=keelson", "list"); strings.Count(got, "\n")+1 != count {
		t.Errorf("git notes list: %d notes, want %d", strings.Count(got, "\n")+1, count)
	}
	for _, sha := range []string{shas[0], shas[count/2], shas[count-1]} {
		want := "git"
		if sha != shas[0] {
			want = strings.TrimSpace(healthy("web:" + sha[:6]))
		}
		if got := gitNote(g, sha); got != want {
			t.Errorf("note of %s = %q, want %q", sha[:8], got, want)
		}
	}
	read, err = n.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != count {
		t.Errorf("Read = %d notes, want %d", len(read), count)
	}
}

// TestNotesRemote pushes notes to a git http-backend with basic auth,
// resolves a conflict with a note someone else pushed meanwhile, and reads
// the remote's notes from a new notes repository.
func TestNotesRemote(t *testing.T) {
	srv := gittest.StartHTTPServer(t, "", "keelson", "s3cret")
	g := gittest.NewRepo(t, srv.Root, "repo")
	g.Git("config", "http.receivepack", "true")
	c1 := g.CommitFiles("c1", map[string]string{"a.yaml": "1"})
	c2 := g.CommitFiles("c2", map[string]string{"a.yaml": "2"})
	c3 := g.CommitFiles("c3", map[string]string{"a.yaml": "3"})
	t.Setenv("KEELSON_TEST_GIT_TOKEN", "s3cret")
	src := Source{URL: srv.URL("repo"), Auth: Auth{Username: "keelson", PasswordEnv: "KEELSON_TEST_GIT_TOKEN"}}

	n := openNotes(t, src)
	if err := n.Add(t.Context(), map[string]string{c1: healthy("web:v1")}); err != nil {
		t.Fatal(err)
	}
	if got, want := gitNote(g, c1), strings.TrimSpace(healthy("web:v1")); got != want {
		t.Errorf("note of c1 on the server:\n%s\nwant:\n%s", got, want)
	}

	// Someone pushes a note between our fetch and our push: the push is
	// refused, and Add fetches, merges and pushes again.
	var once sync.Once
	pushes := 0
	n.beforePush = func() {
		pushes++
		once.Do(func() { g.Git("notes", "--ref=keelson", "add", "-m", "theirs", c2) })
	}
	if err := n.Add(t.Context(), map[string]string{c2: healthy("web:v2"), c3: healthy("web:v3")}); err != nil {
		t.Fatal(err)
	}
	if pushes != 2 {
		t.Errorf("%d pushes, want 2 (one refused)", pushes)
	}
	want := map[string]string{
		c1: strings.TrimSpace(healthy("web:v1")),
		c2: "theirs\n\n" + strings.TrimSpace(healthy("web:v2")),
		c3: strings.TrimSpace(healthy("web:v3")),
	}
	got := map[string]string{}
	for sha := range want {
		got[sha] = gitNote(g, sha)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notes on the server (-want +got):\n%s", diff)
	}
	if out := g.Git("fsck", "--strict", "--no-progress"); out != "" {
		t.Errorf("git fsck on the server: %s", out)
	}

	// A controller with a new data directory reads them from the remote.
	read, err := openNotes(t, src).Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != 3 || read[c2] != want[c2]+"\n" {
		t.Errorf("Read from the remote = %d notes, c2 %q", len(read), read[c2])
	}

	// Refused credentials fail at once, naming the source but no secret.
	t.Setenv("KEELSON_TEST_GIT_TOKEN", "wrong")
	n.beforePush = nil
	err = openNotes(t, src).Add(t.Context(), map[string]string{c1: healthy("web:v9")})
	if err == nil || strings.Contains(err.Error(), "wrong") || !strings.Contains(err.Error(), srv.URL("repo")) {
		t.Errorf("Add with a bad password = %v; want an error naming the source and not the password", err)
	}
	if got := gitNote(g, c1); strings.Contains(got, "web:v9") {
		t.Errorf("note written with a bad password: %q", got)
	}
}

func TestOutcomeNoteRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		note OutcomeNote
		text string
	}{
		{"healthy", OutcomeNote{Health: "Healthy", Summary: "(applied 12ms, scheduled 210ms, started 640ms, ready 1.4s after fetch)",
			Objects: []NoteObject{{Object: "Deployment/shop/web", Outcome: "Healthy", Images: []string{"web:v2"}}}},
			"keelson: Healthy (applied 12ms, scheduled 210ms, started 640ms, ready 1.4s after fetch)\nDeployment/shop/web: Healthy, image web:v2\n"},
		{"degraded", OutcomeNote{Health: "Degraded", Summary: `— Deployment/shop/web: ReplicaSet "web-abc" has timed out progressing`,
			Objects: []NoteObject{
				{Object: "Deployment/shop/web", Outcome: "Degraded", Images: []string{"web:v3", "proxy:1"}, Reason: `ReplicaSet "web-abc" has timed out progressing — try again`},
				{Object: "DaemonSet/kube-system/agent", Outcome: "Healthy"},
			}},
			"keelson: Degraded — Deployment/shop/web: ReplicaSet \"web-abc\" has timed out progressing\n" +
				"Deployment/shop/web: Degraded, images web:v3, proxy:1 — ReplicaSet \"web-abc\" has timed out progressing — try again\n" +
				"DaemonSet/kube-system/agent: Healthy\n"},
		{"rejected", OutcomeNote{Health: "Rejected", Summary: "— web.yaml:3: bad", Errors: []string{"web.yaml:3: bad", "db.yaml: worse"}},
			"keelson: Rejected — web.yaml:3: bad\nerror: web.yaml:3: bad\nerror: db.yaml: worse\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.note.String(); got != tt.text {
				t.Errorf("String:\n%s\nwant:\n%s", got, tt.text)
			}
			got, ok := ParseOutcomeNote("a human wrote this\n\n" + tt.text)
			if !ok {
				t.Fatal("ParseOutcomeNote: not a keelson note")
			}
			if diff := cmp.Diff(tt.note, got); diff != "" {
				t.Errorf("ParseOutcomeNote (-want +got):\n%s", diff)
			}
		})
	}
	if _, ok := ParseOutcomeNote("just a human note\n"); ok {
		t.Error("ParseOutcomeNote of a note without keelson's part: ok")
	}
}
