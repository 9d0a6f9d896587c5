package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"
	"k8s.io/apimachinery/pkg/labels"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func obj(kind, ns, name string, lbls map[string]string) *Object {
	key := kind + "/" + name
	if ns != "" {
		key = kind + "/" + ns + "/" + name
	}
	return &Object{Key: key, Kind: kind, Namespace: ns, Name: name, Labels: lbls}
}

func keys(objs []*Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Key)
	}
	return out
}

func TestObjectsQuery(t *testing.T) {
	s := newStore(t)
	txn := s.Write()
	for _, o := range []*Object{
		obj("Deployment", "default", "web", map[string]string{"app": "web", "tier": "front"}),
		obj("Deployment", "shop", "cart", map[string]string{"app": "cart"}),
		obj("Service", "default", "web", map[string]string{"app": "web"}),
		obj("Namespace", "", "shop", nil),
		obj("NamespaceExtra", "", "x", nil),
		obj("ServiceAccount", "default", "web", nil),
	} {
		if err := txn.UpsertObject(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	sel := func(s string) labels.Selector {
		l, err := labels.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	tests := []struct {
		name string
		q    ObjectQuery
		want []string
	}{
		{"all", ObjectQuery{}, []string{"Deployment/default/web", "Deployment/shop/cart", "Namespace/shop", "NamespaceExtra/x", "Service/default/web", "ServiceAccount/default/web"}},
		{"kind is not a prefix of another", ObjectQuery{Kind: "Service"}, []string{"Service/default/web"}},
		{"cluster-scoped kind", ObjectQuery{Kind: "Namespace"}, []string{"Namespace/shop"}},
		{"kind", ObjectQuery{Kind: "Deployment"}, []string{"Deployment/default/web", "Deployment/shop/cart"}},
		{"kind and namespace", ObjectQuery{Kind: "Deployment", Namespace: "shop"}, []string{"Deployment/shop/cart"}},
		{"namespace", ObjectQuery{Namespace: "default"}, []string{"Deployment/default/web", "Service/default/web", "ServiceAccount/default/web"}},
		{"selector", ObjectQuery{Selector: sel("app=web,tier=front")}, []string{"Deployment/default/web"}},
		{"selector notin", ObjectQuery{Kind: "Deployment", Selector: sel("app notin (web)")}, []string{"Deployment/shop/cart"}},
		{"nothing", ObjectQuery{Kind: "Pod"}, nil},
	}
	snap := s.Snapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := snap.Objects(memdb.NewWatchSet(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, keys(got)); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIndexesAndCreateIndex(t *testing.T) {
	s := newStore(t)
	txn := s.Write()
	if err := txn.UpsertObject(obj("ConfigMap", "default", "a", nil)); err != nil {
		t.Fatal(err)
	}
	first := txn.Index()
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	txn = s.Write()
	if err := txn.UpsertObject(obj("ConfigMap", "default", "a", map[string]string{"v": "2"})); err != nil {
		t.Fatal(err)
	}
	second := txn.Index()
	if err := txn.AddRevision(&Revision{SHA: "abc", Status: RevisionApplied}); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	if second <= first {
		t.Fatalf("second transaction index %d not above first %d", second, first)
	}
	snap := s.Snapshot()
	o, err := snap.Object(memdb.NewWatchSet(), "ConfigMap/default/a")
	if err != nil {
		t.Fatal(err)
	}
	if o.CreateIndex != first || o.ModifyIndex != second {
		t.Errorf("create/modify index = %d/%d, want %d/%d", o.CreateIndex, o.ModifyIndex, first, second)
	}
	ws := memdb.NewWatchSet()
	if got := snap.Index(ws, TableObjects); got != second {
		t.Errorf("objects index = %d, want %d", got, second)
	}
	if got := snap.Index(ws, TableEvents); got != unwrittenIndex {
		t.Errorf("events index = %d, want %d (never written)", got, unwrittenIndex)
	}
	if _, err := snap.Object(ws, "ConfigMap/default/missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing object: err = %v, want ErrNotFound", err)
	}
}

func TestAbortChangesNothing(t *testing.T) {
	s := newStore(t)
	txn := s.Write()
	if err := txn.UpsertObject(obj("Pod", "default", "p", nil)); err != nil {
		t.Fatal(err)
	}
	txn.Abort()
	got, err := s.Snapshot().Objects(memdb.NewWatchSet(), ObjectQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if idx := s.Snapshot().Index(memdb.NewWatchSet(), TableObjects); len(got) != 0 || idx != unwrittenIndex {
		t.Errorf("aborted transaction left %v, index %d", keys(got), idx)
	}
}

func TestRevisionsPruneKeepsApplied(t *testing.T) {
	s := newStore(t)
	txn := s.Write()
	add := func(status RevisionStatus, sha string) {
		if err := txn.AddRevision(&Revision{SHA: sha, Status: status}); err != nil {
			t.Fatal(err)
		}
	}
	add(RevisionApplied, "good")
	for _, sha := range []string{"bad1", "bad2", "bad3"} {
		add(RevisionFailed, sha)
	}
	if err := txn.PruneRevisions(2); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	revs, err := s.Snapshot().Revisions(memdb.NewWatchSet(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var shas []string
	for _, r := range revs {
		shas = append(shas, r.SHA)
	}
	if diff := cmp.Diff([]string{"bad3", "bad2", "good"}, shas); diff != "" {
		t.Errorf("revisions after prune (-want +got):\n%s", diff)
	}
	applied, err := s.Snapshot().LastRevision(memdb.NewWatchSet(), RevisionApplied)
	if err != nil || applied == nil || applied.SHA != "good" {
		t.Errorf("last applied = %v, %v; want good", applied, err)
	}
}

func TestBlockingWakesOnChange(t *testing.T) {
	s := newStore(t)
	txn := s.Write()
	if err := txn.UpsertObject(obj("Pod", "default", "a", nil)); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	start := s.Snapshot().Index(memdb.NewWatchSet(), TableObjects)

	got := make(chan []string, 1)
	go func() {
		var names []string
		err := s.Blocking(context.Background(), start, time.Minute, func(ws memdb.WatchSet, snap *Snapshot) (uint64, error) {
			objs, err := snap.Objects(ws, ObjectQuery{Kind: "Pod"})
			names = keys(objs)
			return snap.Index(ws, TableObjects), err
		})
		if err != nil {
			names = []string{"error: " + err.Error()}
		}
		got <- names
	}()
	txn = s.Write()
	if err := txn.UpsertObject(obj("Pod", "default", "b", nil)); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case names := <-got:
		if diff := cmp.Diff([]string{"Pod/default/a", "Pod/default/b"}, names); diff != "" {
			t.Errorf("blocking answer (-want +got):\n%s", diff)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking query did not wake on a change")
	}
}

// A follower of a table never written passes back the index it was
// answered; its next query must wait for the first write, not return at
// once (a busy loop: an agent with no pods spun a core this way).
func TestBlockingOnATableNeverWritten(t *testing.T) {
	s := newStore(t)
	var idx uint64
	query := func(ws memdb.WatchSet, snap *Snapshot) (uint64, error) {
		idx = snap.Index(ws, TableObjects)
		return idx, nil
	}
	if err := s.Blocking(t.Context(), 0, time.Minute, query); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Blocking(t.Context(), idx, time.Minute, query) }()
	select {
	case err := <-done:
		t.Fatalf("a query at index %d of an empty table returned before any write (err %v)", idx, err)
	case <-time.After(100 * time.Millisecond):
	}
	before := idx
	txn := s.Write()
	if err := txn.UpsertObject(obj("Pod", "default", "a", nil)); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || idx <= before {
			t.Errorf("after the first write: index %d (was %d), err %v", idx, before, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking query did not wake on the first write")
	}
}

func TestBlockingTimesOutWithCurrentAnswer(t *testing.T) {
	s := newStore(t)
	calls := 0
	err := s.Blocking(context.Background(), 5, 20*time.Millisecond, func(ws memdb.WatchSet, snap *Snapshot) (uint64, error) {
		calls++
		return snap.Index(ws, TableObjects), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("query ran %d times, want 2 (first try, then the answer at the deadline)", calls)
	}
}

func TestBlockingCancelled(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Blocking(ctx, 5, time.Minute, func(ws memdb.WatchSet, snap *Snapshot) (uint64, error) {
		return snap.Index(ws, TableObjects), nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestPodsByIndex(t *testing.T) {
	s := newStore(t)
	txn := s.Write()
	for _, p := range []*Pod{
		{Key: "default/web-1", Namespace: "default", Name: "web-1", NodeName: "n1", OwnerKey: "ReplicaSet/default/web"},
		{Key: "default/web-2", Namespace: "default", Name: "web-2", NodeName: "n2", OwnerKey: "ReplicaSet/default/web"},
		{Key: "shop/cart-1", Namespace: "shop", Name: "cart-1", NodeName: "n1"},
		{Key: "default/pending", Namespace: "default", Name: "pending"},
	} {
		if err := txn.UpsertPod(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.UpsertNode(&Node{Name: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    PodQuery
		want []string
	}{
		{"all", PodQuery{}, []string{"default/pending", "default/web-1", "default/web-2", "shop/cart-1"}},
		{"node", PodQuery{NodeName: "n1"}, []string{"default/web-1", "shop/cart-1"}},
		{"node and namespace", PodQuery{NodeName: "n1", Namespace: "shop"}, []string{"shop/cart-1"}},
		{"owner", PodQuery{OwnerKey: "ReplicaSet/default/web"}, []string{"default/web-1", "default/web-2"}},
		{"namespace", PodQuery{Namespace: "default"}, []string{"default/pending", "default/web-1", "default/web-2"}},
	}
	snap := s.Snapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods, err := snap.Pods(memdb.NewWatchSet(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range pods {
				got = append(got, p.Key)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("pods (-want +got):\n%s", diff)
			}
		})
	}
	txn = s.Write()
	if err := txn.DeletePod("default/web-1"); err != nil {
		t.Fatal(err)
	}
	if err := txn.DeleteNode("n1"); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	nodes, err := s.Snapshot().Nodes(memdb.NewWatchSet())
	if err != nil || len(nodes) != 0 {
		t.Errorf("nodes after delete = %d, %v", len(nodes), err)
	}
	pods, err := s.Snapshot().Pods(memdb.NewWatchSet(), PodQuery{NodeName: "n1"})
	if err != nil || len(pods) != 1 {
		t.Errorf("pods on n1 after delete = %d, %v; want 1", len(pods), err)
	}
}

// TestNodePods: the pods of a node follow the pods' writes in the same
// transaction (a bind, a move, a delete), a write transaction reads its own,
// and a query of a node wakes when one of its pods changes, not when
// another node's does.
func TestNodePods(t *testing.T) {
	s := newStore(t)
	write := func(f func(txn *Txn)) {
		t.Helper()
		txn := s.Write()
		defer txn.Abort()
		f(txn)
		if err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	upsert := func(txn *Txn, key, node string) {
		t.Helper()
		ns, name, _ := strings.Cut(key, "/")
		if err := txn.UpsertPod(&Pod{Key: key, Namespace: ns, Name: name, NodeName: node}); err != nil {
			t.Fatal(err)
		}
	}
	onNode := func(snap *Snapshot, ws memdb.WatchSet, node string) []string {
		t.Helper()
		pods, err := snap.Pods(ws, PodQuery{NodeName: node})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range pods {
			out = append(out, p.Key)
		}
		return out
	}
	write(func(txn *Txn) {
		for _, k := range []string{"b/x", "a/y", "a/x", "c/p"} {
			upsert(txn, k, "n1")
		}
		upsert(txn, "a/z", "n2")
		upsert(txn, "a/pending", "")
		upsert(txn, "a/y", "n2") // moves in the same transaction
		if diff := cmp.Diff([]string{"a/x", "b/x", "c/p"}, onNode(txn.Snapshot(), memdb.NewWatchSet(), "n1")); diff != "" {
			t.Errorf("n1 read in its transaction (-want +got):\n%s", diff)
		}
		if err := txn.DeletePod("c/p"); err != nil {
			t.Fatal(err)
		}
	})
	snap := s.Snapshot()
	for node, want := range map[string][]string{"n1": {"a/x", "b/x"}, "n2": {"a/y", "a/z"}, "n3": nil} {
		if diff := cmp.Diff(want, onNode(snap, memdb.NewWatchSet(), node)); diff != "" {
			t.Errorf("pods of %s (-want +got):\n%s", node, diff)
		}
	}

	// A node without pods watches the nearest part of the tree, as with
	// any row that is missing: it may wake for others' changes.
	ws1, ws2 := memdb.NewWatchSet(), memdb.NewWatchSet()
	onNode(s.Snapshot(), ws1, "n1")
	onNode(s.Snapshot(), ws2, "n2")
	fired := func(ws memdb.WatchSet) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return ws.WatchCtx(ctx) == nil
	}
	write(func(txn *Txn) { upsert(txn, "a/z", "n2") }) // a status report, say
	if fired(ws1) || !fired(ws2) {
		t.Errorf("a change on n2 woke n1 %v, n2 %v; want only n2", fired(ws1), fired(ws2))
	}
	ws1, ws3 := memdb.NewWatchSet(), memdb.NewWatchSet()
	onNode(s.Snapshot(), ws1, "n1")
	onNode(s.Snapshot(), ws3, "n3")
	write(func(txn *Txn) { upsert(txn, "b/x", "n3") }) // from n1 to n3
	if !fired(ws1) || !fired(ws3) {
		t.Errorf("a pod moving from n1 to n3 woke n1 %v, n3 %v", fired(ws1), fired(ws3))
	}
	write(func(txn *Txn) {
		if err := txn.DeletePod("a/x"); err != nil {
			t.Fatal(err)
		}
	})
	if got := onNode(s.Snapshot(), memdb.NewWatchSet(), "n1"); got != nil {
		t.Errorf("n1 keeps %v after its last pod went", got)
	}
}

// TestAddEvents: a batch of events leaves the events table as adding them
// one by one does, whether or not it is longer than MaxEvents.
func TestAddEvents(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	events := func(s *Store) []string {
		evs, err := s.Snapshot().Events(memdb.NewWatchSet(), "")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range evs {
			out = append(out, fmt.Sprintf("%d %s %s", e.ID, e.ObjectKey, e.Message))
		}
		return out
	}
	one, batch := newStore(t), newStore(t)
	n := 0
	for _, size := range []int{3, MaxEvents - 5, 7, MaxEvents + 1234, 1, 2 * MaxEvents} {
		var es, es2 []*Event
		for range size {
			n++
			es = append(es, &Event{ObjectKey: fmt.Sprintf("Pod/p%d", n%7), Message: fmt.Sprint(n)})
			es2 = append(es2, &Event{ObjectKey: fmt.Sprintf("Pod/p%d", n%7), Message: fmt.Sprint(n)})
		}
		txn := one.Write()
		for _, e := range es {
			if err := txn.AddEvent(e, now); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
		txn = batch.Write()
		if err := txn.AddEvents(es2, now); err != nil {
			t.Fatal(err)
		}
		if err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
		want, got := events(one), events(batch)
		if len(want) != min(n, MaxEvents) {
			t.Fatalf("after %d events one by one: %d kept", n, len(want))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("after a batch of %d (-one by one +batch):\n%s", size, diff)
		}
		for _, key := range []string{"Pod/p3", "Pod/p0"} {
			a, _ := one.Snapshot().Events(memdb.NewWatchSet(), key)
			b, _ := batch.Snapshot().Events(memdb.NewWatchSet(), key)
			if len(a) != len(b) {
				t.Fatalf("events of %s: %d one by one, %d in a batch", key, len(a), len(b))
			}
		}
	}
}

// Pods come back sorted by key from the index walk alone, keys that are
// prefixes of others and namespaces that are prefixes of others included.
func TestPodsInKeyOrder(t *testing.T) {
	s := newStore(t)
	keys := []string{"a/b", "a/b-c", "a/ba", "a/b0", "ab/a", "a/a", "a-b/x", "b/", "a/b-c-d", "z/1", "a/b.c"}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	txn := s.Write()
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		if err := txn.UpsertPod(&Pod{Key: k, Namespace: ns, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, q := range []PodQuery{{}, {Namespace: "a"}} {
		pods, err := s.Snapshot().Pods(memdb.NewWatchSet(), q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range pods {
			got = append(got, p.Key)
		}
		want := slices.Sorted(slices.Values(got))
		if !slices.Equal(got, want) || (q.Namespace == "" && len(got) != len(keys)) {
			t.Errorf("pods of %+v: %q, want %q", q, got, want)
		}
	}
}
