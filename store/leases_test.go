package store

import (
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// A renewal is a lease row: it leaves the nodes table, its index and its
// watchers alone. Deleting the node deletes its lease.
func TestLeasesLeaveNodesAlone(t *testing.T) {
	s := newStore(t)
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	w := s.Write()
	if err := w.UpsertNode(&Node{Name: "n1", LeaseRenewed: t0}); err != nil {
		t.Fatal(err)
	}
	if err := w.RenewLease("n1", t0); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	snap := s.Snapshot()
	ws := memdb.NewWatchSet()
	before := snap.Index(ws, TableNodes)
	if _, err := snap.Nodes(ws); err != nil {
		t.Fatal(err)
	}
	w = s.Write()
	if err := w.RenewLease("n1", t0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if !ws.Watch(time.After(50 * time.Millisecond)) {
		t.Error("a renewal woke a watcher of the nodes table")
	}
	snap = s.Snapshot()
	if got := snap.Index(nil, TableNodes); got != before {
		t.Errorf("nodes index %d after a renewal, want %d", got, before)
	}
	leases, err := snap.Leases(0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := leases["n1"], t0.Add(10*time.Second); !got.Equal(want) {
		t.Errorf("lease of n1: %v, want %v", got, want)
	}

	w = s.Write()
	if err := w.DeleteNode("n1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if leases, _ := s.Snapshot().Leases(0); len(leases) != 0 {
		t.Errorf("leases after the node was deleted: %v", leases)
	}
}
