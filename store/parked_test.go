package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"
)

// TestParkedPods: parked rows are written and read beside the pods, raise
// their table's index and wake a watch, go on UnparkPod, and go with their
// pod when DeletePod removes it, in the same transaction.
func TestParkedPods(t *testing.T) {
	s := newStore(t)
	until := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	write := func(f func(txn *Txn) error) {
		t.Helper()
		txn := s.Write()
		defer txn.Abort()
		if err := f(txn); err != nil {
			t.Fatal(err)
		}
		if err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	parked := func() []string {
		t.Helper()
		ps, err := s.Snapshot().ParkedPods(memdb.NewWatchSet())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.Key)
		}
		return out
	}
	write(func(txn *Txn) error {
		for _, k := range []string{"default/web-a", "default/web-b", "default/web-c"} {
			if err := txn.UpsertPod(&Pod{Key: k, Namespace: "default", Name: k[len("default/"):], NodeName: "n1"}); err != nil {
				return err
			}
		}
		return nil
	})
	ws := memdb.NewWatchSet()
	if _, err := s.Snapshot().ParkedPods(ws); err != nil {
		t.Fatal(err)
	}
	before := s.Snapshot().Index(memdb.NewWatchSet(), TableParked)
	write(func(txn *Txn) error {
		for _, k := range []string{"default/web-a", "default/web-b"} {
			if err := txn.ParkPod(&ParkedPod{Key: k, Until: until, Deployment: "Deployment/default/web"}); err != nil {
				return err
			}
		}
		return nil
	})
	if ws.Watch(time.After(time.Second)) {
		t.Error("parking a pod did not wake a watch on the parked pods")
	}
	if after := s.Snapshot().Index(memdb.NewWatchSet(), TableParked); after <= before {
		t.Errorf("parked table index %d after parking, was %d", after, before)
	}
	if diff := cmp.Diff([]string{"default/web-a", "default/web-b"}, parked()); diff != "" {
		t.Errorf("parked (-want +got):\n%s", diff)
	}
	p, err := s.Snapshot().ParkedPod(memdb.NewWatchSet(), "default/web-a")
	if err != nil || p == nil || !p.Until.Equal(until) || p.Deployment != "Deployment/default/web" {
		t.Errorf("ParkedPod(web-a) = %+v, %v", p, err)
	}
	if p, err := s.Snapshot().ParkedPod(memdb.NewWatchSet(), "default/web-c"); p != nil || err != nil {
		t.Errorf("ParkedPod(web-c), not parked = %+v, %v; want nil, nil", p, err)
	}
	write(func(txn *Txn) error {
		if err := txn.UnparkPod("default/web-a"); err != nil {
			return err
		}
		if err := txn.UnparkPod("default/web-c"); err != nil { // not parked: no error
			return err
		}
		return txn.DeletePod("default/web-b")
	})
	if got := parked(); len(got) != 0 {
		t.Errorf("parked after unparking web-a and deleting web-b: %v", got)
	}
	pods, err := s.Snapshot().Pods(memdb.NewWatchSet(), PodQuery{})
	if err != nil || len(pods) != 2 {
		t.Errorf("pods = %d, %v; want web-a and web-c", len(pods), err)
	}
}
