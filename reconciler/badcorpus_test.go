package reconciler

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/keelson/keelson/gitsync"
	"github.com/keelson/keelson/internal/badcorpus"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// goodService is a Service of the good revision: it gets a cluster IP when
// applied, which a bad revision must not take back.
const goodService = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
`

// storedObject is what a test compares of a stored object.
type storedObject struct {
	Revision, Hash, File     string
	Line                     int
	CreateIndex, ModifyIndex uint64
}

func storedObjects(t *testing.T, st *store.Store) (map[string]storedObject, map[string]*store.Object) {
	t.Helper()
	objs, err := st.Snapshot().Objects(memdb.NewWatchSet(), store.ObjectQuery{})
	if err != nil {
		t.Fatal(err)
	}
	summary, rows := map[string]storedObject{}, map[string]*store.Object{}
	for _, o := range objs {
		summary[o.Key] = storedObject{o.Revision, o.Hash, o.File, o.Line, o.CreateIndex, o.ModifyIndex}
		rows[o.Key] = o
	}
	return summary, rows
}

// TestBadCorpusChangesNothing applies every case of the bad-manifest corpus
// (manifest/testdata/bad) on top of a good applied revision: each is
// recorded as failed with exactly the issues of its golden file, and the
// applied revision and every stored object stay as they were.
func TestBadCorpusChangesNothing(t *testing.T) {
	cases := badcorpus.Cases(t, "../manifest/testdata/bad")
	if len(cases) < 30 {
		t.Errorf("bad corpus has %d cases, want at least 30", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			a, st := newApplier(t)
			good, err := a.Apply(revision("good", map[string]string{"a.yaml": cmA, "b.yaml": cmB, "web.yaml": deploy, "svc.yaml": goodService}), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if good.Status != store.RevisionApplied {
				t.Fatalf("good revision %s: %v", good.Status, good.Errors)
			}
			wantObjects, wantRows := storedObjects(t, st)
			snap := st.Snapshot()
			objIdx := snap.Index(memdb.NewWatchSet(), store.TableObjects)

			files, err := manifest.DirFiles(c.Dir(t))
			if err != nil {
				t.Fatal(err)
			}
			bad := &gitsync.Revision{Ref: "refs/heads/main", Files: files, Commit: gitsync.Commit{SHA: "bad-" + c.Name, Author: "dev", Message: c.Name, Time: time.Unix(1700000000, 0)}}
			rec, err := a.Apply(bad, time.Now())
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}

			// Recorded as failed, with every issue of the golden file.
			if rec.Status != store.RevisionFailed {
				t.Errorf("revision recorded as %s, want %s", rec.Status, store.RevisionFailed)
			}
			var got []string
			for _, e := range rec.Errors {
				got = append(got, e.String())
			}
			for _, w := range rec.Warnings {
				got = append(got, "warning: "+w.String())
			}
			if diff := cmp.Diff(c.Want(t), got); diff != "" {
				t.Errorf("recorded issues (-golden +got):\n%s", diff)
			}
			snap = st.Snapshot()
			ws := memdb.NewWatchSet()
			failed, err := snap.LastRevision(ws, store.RevisionFailed)
			if err != nil {
				t.Fatal(err)
			}
			if failed == nil || failed.SHA != bad.Commit.SHA || failed.ID <= good.ID {
				t.Errorf("last failed revision = %+v, want %s after the good one", failed, bad.Commit.SHA)
			}
			if sync, err := snap.Sync(ws); err != nil || sync == nil || sync.State != "Failed" || sync.ObservedSHA != bad.Commit.SHA {
				t.Errorf("sync state = %+v (%v), want Failed at %s", sync, err, bad.Commit.SHA)
			}

			// The good revision stays applied, and no object moved.
			applied, err := snap.LastRevision(ws, store.RevisionApplied)
			if err != nil {
				t.Fatal(err)
			}
			if applied == nil || applied.ID != good.ID || applied.SHA != "good" {
				t.Errorf("applied revision = %+v, want the good one (ID %d)", applied, good.ID)
			}
			if got := snap.Index(ws, store.TableObjects); got != objIdx {
				t.Errorf("objects table index moved from %d to %d", objIdx, got)
			}
			gotObjects, gotRows := storedObjects(t, st)
			if diff := cmp.Diff(wantObjects, gotObjects); diff != "" {
				t.Errorf("stored objects (-before +after):\n%s", diff)
			}
			for key, row := range wantRows {
				if gotRows[key] != row {
					t.Errorf("%s: the stored row was replaced", key)
				}
			}
		})
	}
}
