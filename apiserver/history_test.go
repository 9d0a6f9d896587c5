package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/gitsync"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// gitHistory is the HistorySource cmd/keelson wires: a History and Notes.
type gitHistory struct {
	h *gitsync.History
	n *gitsync.Notes
}

func (g gitHistory) ObjectHistory(ctx context.Context, start, file, key string, limit int) (*gitsync.ObjectLog, error) {
	return g.h.Object(ctx, start, file, key, limit)
}

func (g gitHistory) Notes(ctx context.Context) (map[string]string, error) { return g.n.Read(ctx) }

func webYAML(image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: %q}
`, image)
}

// TestHistory serves the history of a Deployment from a real repository
// (v1 → v2 → v3 broken → revert v3 → revert v2), with outcomes from the
// controller's records for some commits and from notes for another.
func TestHistory(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	v1 := g.CommitFiles("web v1", map[string]string{
		"ns.yaml":  "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
		"web.yaml": webYAML("web:v1"),
	})
	v2 := g.CommitFiles("web v2", map[string]string{"web.yaml": webYAML("web:v2")})
	g.CommitFiles("unrelated", map[string]string{"other.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
	v3 := g.CommitFiles("web v3", map[string]string{"web.yaml": webYAML("web:v3")})
	g.Git("revert", "--no-edit", v3)
	revert3 := g.Head()
	g.Git("revert", "--no-edit", v2)
	revert2 := g.Head()

	repo, err := gitsync.Open(gitsync.Source{URL: g.Dir}, filepath.Join(t.TempDir(), "cache"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	rev, _, err := repo.Sync(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	notes, err := gitsync.OpenNotes(gitsync.Source{URL: g.Dir}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	// An earlier controller recorded v1 in a note.
	if err := notes.Add(t.Context(), map[string]string{v1: gitsync.OutcomeNote{Health: "Healthy",
		Objects: []gitsync.NoteObject{{Object: "Deployment/shop/web", Outcome: "Healthy", Images: []string{"web:v1"}}}}.String()}); err != nil {
		t.Fatal(err)
	}

	st, err := store.New()
	if err != nil {
		t.Fatal(err)
	}
	res := manifest.NewLoader(manifest.Options{}).Load(rev.Files)
	var web *store.Object
	for _, o := range res.Objects {
		if o.Key() == "Deployment/shop/web" {
			web = &store.Object{Key: o.Key(), Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Obj: o.Obj, File: o.File, Line: o.Line, Hash: o.Hash, Revision: revert2}
		}
	}
	rs := &store.Object{Key: "ReplicaSet/shop/web-1", Kind: "ReplicaSet", Namespace: "shop", Name: "web-1", OwnerKey: web.Key, Obj: web.Obj}
	record := func(sha string, outcome store.RolloutOutcome, reason string) *store.Revision {
		return &store.Revision{SHA: sha, Status: store.RevisionApplied, Health: outcome,
			Rollouts: []store.Rollout{{Object: web.Key, Outcome: outcome, Reason: reason}}}
	}
	write(t, st, func(txn *store.Txn) error {
		for _, o := range []*store.Object{web, rs} {
			if err := txn.UpsertObject(o); err != nil {
				return err
			}
		}
		for _, r := range []*store.Revision{
			record(v2, store.RolloutHealthy, ""),
			{SHA: v3, Status: store.RevisionFailed, Errors: []manifest.Issue{{File: "web.yaml", Line: 9, Object: web.Key, Message: "an earlier attempt"}}},
			record(v3, store.RolloutDegraded, `ReplicaSet "web-abc" has timed out progressing.`),
			record(revert2, store.RolloutProgressing, ""),
		} {
			if err := txn.AddRevision(r); err != nil {
				return err
			}
		}
		return nil
	})

	srv := httptest.NewServer(New(st, Options{History: gitHistory{gitsync.NewHistory(repo), notes}}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.History(t.Context(), "Deployment", "shop", "web", 0)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		SHA, Change, Outcome, Reason, From string
		Images                             []string
		Current                            bool
	}
	var got []entry
	for _, e := range h.Items {
		got = append(got, entry{e.SHA, e.Change, e.Outcome, e.Reason, e.From, e.Images, e.Current})
	}
	want := []entry{
		{revert2, "Changed", "Progressing", "", "controller", []string{"web:v1"}, true},
		{revert3, "Changed", "Unknown", "", "", []string{"web:v2"}, false},
		{v3, "Changed", "Degraded", `ReplicaSet "web-abc" has timed out progressing.`, "controller", []string{"web:v3"}, false},
		{v2, "Changed", "Healthy", "", "controller", []string{"web:v2"}, false},
		{v1, "Added", "Healthy", "", "note", []string{"web:v1"}, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if h.Object != web.Key || h.File != "web.yaml" || h.Index == 0 || h.Items[0].Author != "Test Author" || !strings.HasPrefix(h.Items[0].Message, `Revert "web v2"`) {
		t.Errorf("history header or commit details: %+v", h)
	}

	// With a limit.
	h, err = c.History(t.Context(), "Deployment", "shop", "web", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Items) != 2 || !h.Items[0].Current {
		t.Errorf("limit 2: %d items, first current %v", len(h.Items), len(h.Items) > 0 && h.Items[0].Current)
	}

	// A newer commit, rejected, moved the file away: the history is read
	// from the applied commit.
	g.Git("mv", "web.yaml", "front.yaml")
	g.CommitFiles("move web, and break it", map[string]string{"front.yaml": "not: [yaml"})
	if _, _, err := repo.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	h, err = c.History(t.Context(), "Deployment", "shop", "web", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Items) != 5 || h.Items[0].SHA != revert2 || !h.Items[0].Current {
		t.Errorf("history after a rejected move: %d items, first %s", len(h.Items), h.Items[0].SHA)
	}

	for _, tc := range []struct {
		kind, name string
		limit      int
		want       error
		wantText   string
	}{
		{"Deployment", "nope", 0, client.ErrNotFound, "not found"},
		{"ReplicaSet", "web-1", 0, nil, "made by the controller"},
	} {
		_, err := c.History(t.Context(), tc.kind, "shop", tc.name, tc.limit)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("History(%s/%s) = %v, want %v containing %q", tc.kind, tc.name, err, tc.want, tc.wantText)
		}
	}
}

func TestJoinHistoryCurrentAfterRestart(t *testing.T) {
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	changes := []gitsync.ObjectChange{
		{Commit: gitsync.Commit{SHA: "c3", Time: at}, Change: gitsync.ChangeChanged, Hash: "h1"},
		{Commit: gitsync.Commit{SHA: "c2", Time: at}, Change: gitsync.ChangeInvalid, Error: "web.yaml:3: bad"},
		{Commit: gitsync.Commit{SHA: "c1", Time: at}, Change: gitsync.ChangeAdded, Hash: "h1"},
	}
	obj := &store.Object{Key: "Deployment/shop/web", File: "web.yaml", Hash: "h1", Revision: "head-after-restart"}
	notes := map[string]string{"c2": "keelson: Rejected — web.yaml:3: bad\nerror: web.yaml:3: bad\n"}
	got := joinHistory(obj, changes, nil, notes)
	type entry struct {
		SHA, Outcome, Reason, From string
		Current                    bool
	}
	var short []entry
	for _, e := range got {
		short = append(short, entry{e.SHA, e.Outcome, e.Reason, e.From, e.Current})
	}
	want := []entry{
		{"c3", api.OutcomeUnknown, "", "", true},
		{"c2", api.OutcomeRejected, "web.yaml:3: bad", "note", false},
		{"c1", api.OutcomeUnknown, "", "", false},
	}
	if diff := cmp.Diff(want, short); diff != "" {
		t.Errorf("joinHistory (-want +got):\n%s", diff)
	}
	// An invalid commit without record nor note was rejected all the same.
	got = joinHistory(obj, changes, nil, nil)
	if got[1].Outcome != api.OutcomeRejected || got[1].Reason != "web.yaml:3: bad" {
		t.Errorf("invalid change without records: %+v", got[1])
	}
}

func TestHistoryNotServed(t *testing.T) {
	_, c := setup(t)
	_, err := c.History(t.Context(), "Deployment", "shop", "web", 0)
	if err == nil || !strings.Contains(err.Error(), "does not read Git history") {
		t.Errorf("History without a source = %v", err)
	}
}
