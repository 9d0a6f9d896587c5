package store

import (
	"fmt"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// BenchmarkEventsOfObject is describe's read of one object's events: a scan
// of the MaxEvents kept (the events table has no index by object).
func BenchmarkEventsOfObject(b *testing.B) {
	st, err := New()
	if err != nil {
		b.Fatal(err)
	}
	evs := make([]*Event, MaxEvents)
	for i := range evs {
		evs[i] = &Event{ObjectKey: fmt.Sprintf("Pod/scale/d%04d-6d4f8b9c7d-%05x", i/10, i), Type: "Normal", Reason: "Scheduled", Message: "bound"}
	}
	txn := st.Write()
	if err := txn.AddEvents(evs, time.Now()); err != nil {
		b.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		b.Fatal(err)
	}
	snap := st.Snapshot()
	b.ResetTimer()
	for range b.N {
		got, err := snap.Events(memdb.NewWatchSet(), evs[MaxEvents/2].ObjectKey)
		if err != nil || len(got) != 1 {
			b.Fatalf("events: %d, %v", len(got), err)
		}
	}
}
