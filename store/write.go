package store

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// Txn is a write transaction. Use Commit to make its changes visible; Abort
// (safe after Commit) drops them.
type Txn struct {
	txn   *memdb.Txn
	index uint64
	dirty map[string]bool
	// nodePods are the node pod lists this transaction changed, written at
	// Commit (see nodepods.go).
	nodePods map[string][]*Pod
	s        *Store
}

// Write starts a write transaction; writes are serialised. The transaction's
// index is one above the highest index in the store.
func (s *Store) Write() *Txn {
	txn := s.db.Txn(true)
	idx := uint64(unwrittenIndex)
	it, err := txn.Get(TableIndex, "id")
	if err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			idx = max(idx, raw.(*IndexEntry).Value)
		}
	}
	return &Txn{txn: txn, index: idx + 1, dirty: map[string]bool{}, s: s}
}

// Index is the modify index this transaction writes.
func (t *Txn) Index() uint64 { return t.index }

// Abort drops the transaction's changes.
func (t *Txn) Abort() { t.txn.Abort() }

// Commit raises the modify index of every table written and makes the changes visible.
func (t *Txn) Commit() error {
	if err := t.writeNodePods(); err != nil {
		return err
	}
	for table := range t.dirty {
		if err := t.txn.Insert(TableIndex, &IndexEntry{Table: table, Value: t.index}); err != nil {
			return fmt.Errorf("store: index %s: %w", table, err)
		}
	}
	t.txn.Commit()
	return nil
}

// Snapshot is a read view of the transaction, including its own writes.
func (t *Txn) Snapshot() *Snapshot { return &Snapshot{txn: t.txn, w: t, s: t.s} }

func (t *Txn) insert(table string, obj any) error {
	if err := t.txn.Insert(table, obj); err != nil {
		return fmt.Errorf("store: insert into %s: %w", table, err)
	}
	t.dirty[table] = true
	return nil
}

// UpsertObject inserts or replaces an object, keeping its CreateIndex.
// The object must not be shared with readers.
func (t *Txn) UpsertObject(o *Object) error {
	raw, err := t.txn.First(TableObjects, "id", o.Key)
	if err != nil {
		return fmt.Errorf("store: object %s: %w", o.Key, err)
	}
	o.CreateIndex = t.index
	if raw != nil {
		o.CreateIndex = raw.(*Object).CreateIndex
	}
	o.ModifyIndex = t.index
	return t.insert(TableObjects, o)
}

// DeleteObject removes an object by Key; a missing object is not an error.
func (t *Txn) DeleteObject(key string) error {
	raw, err := t.txn.First(TableObjects, "id", key)
	if err != nil {
		return fmt.Errorf("store: object %s: %w", key, err)
	}
	if raw == nil {
		return nil
	}
	if err := t.txn.Delete(TableObjects, raw); err != nil {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	t.dirty[TableObjects] = true
	return nil
}

// AddRevision records a revision, assigning its ID.
func (t *Txn) AddRevision(rev *Revision) error {
	var last uint64
	raw, err := t.txn.Last(TableRevisions, "id")
	if err != nil {
		return fmt.Errorf("store: revisions: %w", err)
	}
	if raw != nil {
		last = raw.(*Revision).ID
	}
	rev.ID = last + 1
	rev.CreateIndex = t.index
	return t.insert(TableRevisions, rev)
}

// UpdateRevision replaces a recorded revision (its rollouts' progress),
// keeping its ID and CreateIndex.
func (t *Txn) UpdateRevision(rev *Revision) error {
	raw, err := t.txn.First(TableRevisions, "id", rev.ID)
	if err != nil {
		return fmt.Errorf("store: revision %d: %w", rev.ID, err)
	}
	if raw == nil {
		return fmt.Errorf("revision %d: %w", rev.ID, ErrNotFound)
	}
	rev.CreateIndex = raw.(*Revision).CreateIndex
	return t.insert(TableRevisions, rev)
}

// PruneRevisions keeps the newest keep revisions, always keeping the newest
// applied one so that status can name it.
func (t *Txn) PruneRevisions(keep int) error {
	snap := t.Snapshot()
	revs, err := snap.Revisions(memdb.NewWatchSet(), 0)
	if err != nil {
		return err
	}
	applied, err := snap.LastRevision(memdb.NewWatchSet(), RevisionApplied)
	if err != nil {
		return err
	}
	for i, r := range revs {
		if i < keep || r == applied {
			continue
		}
		if err := t.txn.Delete(TableRevisions, r); err != nil {
			return fmt.Errorf("store: prune revision %d: %w", r.ID, err)
		}
		t.dirty[TableRevisions] = true
	}
	return nil
}

// SetSync replaces the source's sync state.
func (t *Txn) SetSync(s *SyncState) error {
	s.Name = "source"
	s.ModifyIndex = t.index
	return t.insert(TableSync, s)
}

// AddEvent records an event, assigning its ID and, when zero, its time.
func (t *Txn) AddEvent(e *Event, now time.Time) error {
	var last uint64
	raw, err := t.txn.Last(TableEvents, "id")
	if err != nil {
		return fmt.Errorf("store: events: %w", err)
	}
	if raw != nil {
		last = raw.(*Event).ID
	}
	e.ID = last + 1
	if e.Time.IsZero() {
		e.Time = now
	}
	if err := t.insert(TableEvents, e); err != nil {
		return err
	}
	// Events are a bounded log: the oldest go past MaxEvents.
	if e.ID > MaxEvents {
		raw, err := t.txn.First(TableEvents, "id", e.ID-MaxEvents)
		if err == nil && raw != nil {
			if err := t.txn.Delete(TableEvents, raw); err != nil {
				return fmt.Errorf("store: trim events: %w", err)
			}
		}
	}
	return nil
}

// AddEvents records events in order, as AddEvent one by one would: each
// gets the next ID (and, when zero, the time now), and the store keeps the
// newest MaxEvents. Of a batch longer than that (a pass that binds 100,000
// pods says so 100,000 times) only the last MaxEvents are written: the
// others would be trimmed in the same transaction.
func (t *Txn) AddEvents(es []*Event, now time.Time) error {
	if len(es) == 0 {
		return nil
	}
	var last uint64
	raw, err := t.txn.Last(TableEvents, "id")
	if err != nil {
		return fmt.Errorf("store: events: %w", err)
	}
	if raw != nil {
		last = raw.(*Event).ID
	}
	skip := max(len(es)-MaxEvents, 0)
	// The events the batch pushes out: those up to its last ID less
	// MaxEvents, which AddEvent would trim one by one.
	if end := last + uint64(len(es)); end > MaxEvents {
		it, err := t.txn.Get(TableEvents, "id")
		if err != nil {
			return fmt.Errorf("store: events: %w", err)
		}
		var old []*Event
		for raw := it.Next(); raw != nil && raw.(*Event).ID <= end-MaxEvents; raw = it.Next() {
			old = append(old, raw.(*Event))
		}
		for _, e := range old {
			if err := t.txn.Delete(TableEvents, e); err != nil {
				return fmt.Errorf("store: trim events: %w", err)
			}
		}
	}
	for i, e := range es {
		e.ID = last + uint64(i) + 1
		if e.Time.IsZero() {
			e.Time = now
		}
		if i < skip {
			continue
		}
		if err := t.insert(TableEvents, e); err != nil {
			return err
		}
	}
	return nil
}

// MaxEvents is how many events the store keeps.
const MaxEvents = 10000
