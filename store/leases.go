package store

import (
	"fmt"
	"time"
)

// TableLeases holds when each node's agent last renewed its lease. Renewals
// are the store's most frequent write (every node every 10 s: 500 a second
// at 5,000 nodes) and change nothing but the time, so they do not rewrite
// the node's row: whoever watches the nodes table (the controllers' passes,
// agents following the nodes for their routes) wakes only when a node
// joins, leaves or changes. The controllers find expired leases by reading
// this table on their periodic pass, without watching it.
const TableLeases = "leases"

// Lease is the last renewal of a node's lease. Rows are immutable once
// inserted.
type Lease struct {
	Node    string
	Renewed time.Time
}

// RenewLease records that node's agent renewed its lease at t.
func (t *Txn) RenewLease(node string, at time.Time) error {
	return t.insert(TableLeases, &Lease{Node: node, Renewed: at})
}

// Leases returns the nodes' last renewals by node name, in a map made for
// sizeHint of them. It adds no watch: renewals are not changes anyone waits
// for.
func (r *Snapshot) Leases(sizeHint int) (map[string]time.Time, error) {
	it, err := r.txn.Get(TableLeases, "id")
	if err != nil {
		return nil, fmt.Errorf("store: leases: %w", err)
	}
	out := make(map[string]time.Time, sizeHint)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		l := raw.(*Lease)
		out[l.Node] = l.Renewed
	}
	return out, nil
}
