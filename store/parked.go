package store

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// TableParked holds the pods a Deployment's scale-down delay parked (see
// the reconciler's park.go): a parked pod keeps running on its node but has
// left its services' endpoints and counts as a replica of nothing, until
// its ReplicaSet takes it back or its park ends. Parking does not touch the
// pod's row (a row is 256 bytes, see pod.go): the few parked pods have rows
// of their own here, keyed like the pod. DeletePod removes a pod's parked
// row in the same transaction, so a parked row never outlives its pod.
const TableParked = "parked"

// ParkedPod is a parked pod. Rows are immutable once inserted.
type ParkedPod struct {
	Key string // the pod's namespace/name
	// Until is when the park ends: the pod is deleted then, unless its
	// ReplicaSet has taken it back.
	Until time.Time
	// Deployment is the Key of the Deployment whose scale-down delay
	// parked the pod.
	Deployment  string
	ModifyIndex uint64
}

// ParkPod inserts or replaces a parked pod's row.
func (t *Txn) ParkPod(p *ParkedPod) error {
	p.ModifyIndex = t.index
	return t.insert(TableParked, p)
}

// UnparkPod removes a pod's parked row; a pod that is not parked is not an
// error.
func (t *Txn) UnparkPod(key string) error { return t.deleteByID(TableParked, key) }

// ParkedPods returns every parked pod, sorted by key.
func (r *Snapshot) ParkedPods(ws memdb.WatchSet) ([]*ParkedPod, error) {
	it, err := r.txn.Get(TableParked, "id")
	if err != nil {
		return nil, fmt.Errorf("store: parked pods: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*ParkedPod
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*ParkedPod))
	}
	return out, nil
}

// ParkedPod returns the parked row of a pod (namespace/name), or nil when
// the pod is not parked.
func (r *Snapshot) ParkedPod(ws memdb.WatchSet, key string) (*ParkedPod, error) {
	ch, raw, err := r.txn.FirstWatch(TableParked, "id", key)
	if err != nil {
		return nil, fmt.Errorf("store: parked pod %s: %w", key, err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, nil
	}
	return raw.(*ParkedPod), nil
}
