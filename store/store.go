package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"k8s.io/apimachinery/pkg/labels"
)

// ErrNotFound is returned when a named row does not exist.
var ErrNotFound = errors.New("not found")

// Store is the in-memory state. It is safe for concurrent use: any number of
// readers, writes serialised by go-memdb.
type Store struct {
	db *memdb.MemDB
	// podsLen is how many pods the last read of all of them found: the next
	// one makes its slice that size at once (a pass reads all pods every
	// 2 s, and growing the slice by appending made twice its size in
	// garbage).
	podsLen atomic.Int64
}

// New returns an empty store.
func New() (*Store, error) {
	s, err := mustValidSchema()
	if err != nil {
		return nil, err
	}
	db, err := memdb.NewMemDB(s)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{db: db}, nil
}

// Snapshot is a consistent read-only view of the store.
type Snapshot struct {
	txn *memdb.Txn
	// w is the write transaction this is a view of, if it is one: its
	// node pod lists are written before they are read.
	w *Txn
	s *Store
}

// Snapshot returns a read view that does not change.
func (s *Store) Snapshot() *Snapshot { return &Snapshot{txn: s.db.Txn(false), s: s} }

// Index returns the modify index of a table: unwrittenIndex if it was never
// written. It is never 0, which would make a blocking query that passes it
// back return at once: a client following an empty table would spin.
func (r *Snapshot) Index(ws memdb.WatchSet, table string) uint64 {
	ch, raw, err := r.txn.FirstWatch(TableIndex, "id", table)
	if err != nil {
		return unwrittenIndex
	}
	ws.Add(ch)
	if raw == nil {
		return unwrittenIndex
	}
	return raw.(*IndexEntry).Value
}

// unwrittenIndex is the index of a table never written; the first write
// has the index above it (as Consul and Nomad never answer index 0).
const unwrittenIndex = 1

// MaxIndex is the highest modify index over the given tables.
func (r *Snapshot) MaxIndex(ws memdb.WatchSet, tables ...string) uint64 {
	var m uint64
	for _, t := range tables {
		m = max(m, r.Index(ws, t))
	}
	return m
}

// ObjectQuery selects desired objects. Empty fields match everything.
type ObjectQuery struct {
	Kind      string
	Namespace string
	Selector  labels.Selector
}

// Objects returns the objects that match q, sorted by Key.
func (r *Snapshot) Objects(ws memdb.WatchSet, q ObjectQuery) ([]*Object, error) {
	var (
		it  memdb.ResultIterator
		err error
	)
	switch {
	case q.Kind != "" && q.Namespace != "":
		it, err = r.txn.Get(TableObjects, "kind_namespace", q.Kind, q.Namespace)
	case q.Kind != "":
		// A prefix of the compound index: every namespace of the kind.
		it, err = r.txn.Get(TableObjects, "kind_namespace_prefix", q.Kind, "")
	case q.Namespace != "":
		it, err = r.txn.Get(TableObjects, "namespace", q.Namespace)
	default:
		it, err = r.txn.Get(TableObjects, "id")
	}
	if err != nil {
		return nil, fmt.Errorf("store: list objects: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*Object
	for raw := it.Next(); raw != nil; raw = it.Next() {
		o := raw.(*Object)
		if q.Selector != nil && !q.Selector.Matches(labels.Set(o.Labels)) {
			continue
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Object returns one object by Key.
func (r *Snapshot) Object(ws memdb.WatchSet, key string) (*Object, error) {
	ch, raw, err := r.txn.FirstWatch(TableObjects, "id", key)
	if err != nil {
		return nil, fmt.Errorf("store: object %s: %w", key, err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, fmt.Errorf("object %s: %w", key, ErrNotFound)
	}
	return raw.(*Object), nil
}

// Revisions returns the recorded revisions, newest first, at most limit (0 = all).
func (r *Snapshot) Revisions(ws memdb.WatchSet, limit int) ([]*Revision, error) {
	it, err := r.txn.GetReverse(TableRevisions, "id")
	if err != nil {
		return nil, fmt.Errorf("store: list revisions: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*Revision
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Revision))
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

// LastRevision returns the newest revision with the given status, or nil.
func (r *Snapshot) LastRevision(ws memdb.WatchSet, status RevisionStatus) (*Revision, error) {
	it, err := r.txn.GetReverse(TableRevisions, "id")
	if err != nil {
		return nil, fmt.Errorf("store: list revisions: %w", err)
	}
	ws.Add(it.WatchCh())
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if rev := raw.(*Revision); rev.Status == status {
			return rev, nil
		}
	}
	return nil, nil
}

// Sync returns the state of the Git source, or nil before the first sync.
func (r *Snapshot) Sync(ws memdb.WatchSet) (*SyncState, error) {
	ch, raw, err := r.txn.FirstWatch(TableSync, "id", "source")
	if err != nil {
		return nil, fmt.Errorf("store: sync state: %w", err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, nil
	}
	return raw.(*SyncState), nil
}

// Events returns the events of an object (all events when key is empty),
// oldest first.
func (r *Snapshot) Events(ws memdb.WatchSet, key string) ([]*Event, error) {
	it, err := r.txn.Get(TableEvents, "id")
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*Event
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if e := raw.(*Event); key == "" || e.ObjectKey == key {
			out = append(out, e)
		}
	}
	// In ID order already: the id index is the ID, big-endian.
	return out, nil
}

// Blocking runs query until the index it returns is above minIndex or wait has
// passed, re-running it each time something it read changes. It is the
// blocking-query primitive of the API: query must add what it reads to ws.
func (s *Store) Blocking(ctx context.Context, minIndex uint64, wait time.Duration, query func(ws memdb.WatchSet, snap *Snapshot) (uint64, error)) error {
	var timeout <-chan time.Time
	if minIndex > 0 && wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		ws := memdb.NewWatchSet()
		idx, err := query(ws, s.Snapshot())
		if err != nil || minIndex == 0 || wait <= 0 || idx > minIndex {
			return err
		}
		// Wake on a change, the deadline or cancellation, whichever comes first.
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			select {
			case <-timeout:
				cancel()
			case <-wctx.Done():
			}
		}()
		werr := ws.WatchCtx(wctx)
		cancel()
		<-done
		if werr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Deadline: answer with what is there now.
			ws = memdb.NewWatchSet()
			_, err = query(ws, s.Snapshot())
			return err
		}
	}
}
