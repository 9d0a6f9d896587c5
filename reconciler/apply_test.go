package reconciler

import (
	"crypto/sha1"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/keelson/keelson/gitsync"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// revision builds a revision from file contents, as gitsync would give it.
func revision(sha string, files map[string]string) *gitsync.Revision {
	rev := &gitsync.Revision{Commit: gitsync.Commit{SHA: sha, Author: "dev", Message: "commit " + sha, Time: time.Unix(1700000000, 0)}}
	for p, content := range files {
		h := sha1.Sum([]byte(content))
		data := []byte(content)
		rev.Files = append(rev.Files, manifest.File{
			Path: p, Hash: hex.EncodeToString(h[:]), Size: int64(len(data)),
			Read: func() ([]byte, error) { return data, nil },
		})
	}
	return rev
}

const cmA = `apiVersion: v1
kind: ConfigMap
metadata:
  name: a
data:
  k: v1
`

const cmB = `apiVersion: v1
kind: ConfigMap
metadata:
  name: b
data:
  k: v1
`

const deploy = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:v1
`

func newApplier(t *testing.T) (*Applier, *store.Store) {
	t.Helper()
	st, err := store.New()
	if err != nil {
		t.Fatal(err)
	}
	return NewApplier(st, manifest.NewLoader(manifest.Options{}), nil, slog.New(slog.DiscardHandler), nil), st
}

func objectState(t *testing.T, st *store.Store) map[string]string {
	t.Helper()
	objs, err := st.Snapshot().Objects(memdb.NewWatchSet(), store.ObjectQuery{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, o := range objs {
		out[o.Key] = o.Revision
	}
	return out
}

func TestApplyUpsertsPrunesAndKeepsUnchanged(t *testing.T) {
	a, st := newApplier(t)
	rec, err := a.Apply(revision("c1", map[string]string{"a.yaml": cmA, "b.yaml": cmB, "web.yaml": deploy}), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != store.RevisionApplied || rec.Added != 3 {
		t.Fatalf("first revision: %+v", rec)
	}
	idx := st.Snapshot().Index(memdb.NewWatchSet(), store.TableObjects)

	// c2 changes a, removes b, keeps web.
	rec, err = a.Apply(revision("c2", map[string]string{"a.yaml": strings.Replace(cmA, "k: v1", "k: v2", 1), "web.yaml": deploy}), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != store.RevisionApplied || rec.Added != 0 || rec.Changed != 1 || rec.Removed != 1 {
		t.Fatalf("second revision: %+v", rec)
	}
	want := map[string]string{"ConfigMap/default/a": "c2", "Deployment/default/web": "c1"}
	if diff := cmp.Diff(want, objectState(t, st)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	web, err := st.Snapshot().Object(memdb.NewWatchSet(), "Deployment/default/web")
	if err != nil {
		t.Fatal(err)
	}
	if web.ModifyIndex != idx {
		t.Errorf("unchanged Deployment modify index moved from %d to %d", idx, web.ModifyIndex)
	}

	// c3 changes nothing: no object is written.
	if _, err := a.Apply(revision("c3", map[string]string{"a.yaml": strings.Replace(cmA, "k: v1", "k: v2", 1), "web.yaml": deploy}), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := st.Snapshot().Index(memdb.NewWatchSet(), store.TableObjects); got != idx+1 {
		t.Errorf("objects index after a no-op revision = %d, want %d (unchanged)", got, idx+1)
	}
}

func TestBadRevisionChangesNothing(t *testing.T) {
	a, st := newApplier(t)
	if _, err := a.Apply(revision("good", map[string]string{"a.yaml": cmA, "web.yaml": deploy}), time.Now()); err != nil {
		t.Fatal(err)
	}
	before := objectState(t, st)
	objIdx := st.Snapshot().Index(memdb.NewWatchSet(), store.TableObjects)

	// The bad commit removes a.yaml, changes web and breaks b.yaml: none of it may land.
	bad := revision("bad", map[string]string{
		"web.yaml": strings.Replace(deploy, "web:v1", "web:v2", 1),
		"b.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  bogus: 1\n",
	})
	rec, err := a.Apply(bad, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != store.RevisionFailed || len(rec.Errors) == 0 {
		t.Fatalf("bad revision recorded as %+v", rec)
	}
	if !strings.HasPrefix(rec.Errors[0].String(), "b.yaml:5: ") {
		t.Errorf("error %q does not name b.yaml line 5", rec.Errors[0])
	}
	if diff := cmp.Diff(before, objectState(t, st)); diff != "" {
		t.Errorf("a bad revision changed objects (-before +after):\n%s", diff)
	}
	if got := st.Snapshot().Index(memdb.NewWatchSet(), store.TableObjects); got != objIdx {
		t.Errorf("objects index moved from %d to %d on a bad revision", objIdx, got)
	}
	snap := st.Snapshot()
	sync, _ := snap.Sync(memdb.NewWatchSet())
	applied, _ := snap.LastRevision(memdb.NewWatchSet(), store.RevisionApplied)
	if sync.State != "Failed" || applied.SHA != "good" || !strings.Contains(sync.LastError, "b.yaml:5") {
		t.Errorf("after bad: sync %+v, applied %s", sync, applied.SHA)
	}

	// A later good commit recovers by itself.
	rec, err = a.Apply(revision("fixed", map[string]string{"web.yaml": deploy}), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sync, _ = st.Snapshot().Sync(memdb.NewWatchSet())
	if rec.Status != store.RevisionApplied || sync.State != "Synced" || sync.ConsecutiveKO != 0 {
		t.Errorf("after fix: rec %s, sync %+v", rec.Status, sync)
	}
}

func TestSourceErrorKeepsObjects(t *testing.T) {
	a, st := newApplier(t)
	if _, err := a.Apply(revision("good", map[string]string{"a.yaml": cmA}), time.Now()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.SourceError(errString("git source git://127.0.0.1:1/repo: connection refused")); err != nil {
			t.Fatal(err)
		}
	}
	sync, _ := st.Snapshot().Sync(memdb.NewWatchSet())
	if sync.State != "Error" || sync.ConsecutiveKO != 2 || !strings.Contains(sync.LastError, "connection refused") {
		t.Errorf("sync = %+v", sync)
	}
	if diff := cmp.Diff(map[string]string{"ConfigMap/default/a": "good"}, objectState(t, st)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestComputePlan(t *testing.T) {
	cur := []*store.Object{
		{Key: "ConfigMap/default/same", Hash: "h1", File: "a.yaml", Line: 1},
		{Key: "ConfigMap/default/changed", Hash: "h2", File: "a.yaml", Line: 5},
		{Key: "ConfigMap/default/moved", Hash: "h3", File: "a.yaml", Line: 9},
		{Key: "ConfigMap/default/gone", Hash: "h4", File: "b.yaml", Line: 1},
		{Key: "Pod/default/web-abc", Hash: "h5", OwnerKey: "ReplicaSet/default/web"},
	}
	desired := []*manifest.Object{
		{Kind: "ConfigMap", Namespace: "default", Name: "same", Hash: "h1", File: "a.yaml", Line: 1},
		{Kind: "ConfigMap", Namespace: "default", Name: "changed", Hash: "h2x", File: "a.yaml", Line: 5},
		{Kind: "ConfigMap", Namespace: "default", Name: "moved", Hash: "h3", File: "c.yaml", Line: 2},
		{Kind: "ConfigMap", Namespace: "default", Name: "new", Hash: "h6", File: "c.yaml", Line: 8},
	}
	p := ComputePlan(cur, desired, "sha2")
	var up []string
	for _, o := range p.Upserts {
		up = append(up, o.Key+"@"+o.Revision)
	}
	if diff := cmp.Diff([]string{"ConfigMap/default/changed@sha2", "ConfigMap/default/moved@", "ConfigMap/default/new@sha2"}, up); diff != "" {
		t.Errorf("upserts (-want +got):\n%s", diff)
	}
	// Objects owned by controllers are never pruned by a revision.
	if diff := cmp.Diff([]string{"ConfigMap/default/gone"}, p.Deletes); diff != "" {
		t.Errorf("deletes (-want +got):\n%s", diff)
	}
	if p.Added != 1 || p.Changed != 1 {
		t.Errorf("added %d changed %d, want 1 1", p.Added, p.Changed)
	}
}
