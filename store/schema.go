package store

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// Table names.
const (
	TableIndex     = "index"
	TableObjects   = "objects"
	TableRevisions = "revisions"
	TableSync      = "sync"
	TableNodes     = "nodes"
	TablePods      = "pods"
	TableEndpoints = "endpoints"
	TableEvents    = "events"
	// TableParked is declared with its rows in parked.go.
)

// IndexEntry is a row of the index table: the modify index of one table.
type IndexEntry struct {
	Table string
	Value uint64
}

func schema() *memdb.DBSchema {
	id := func(field string) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: field}}
	}
	str := func(name, field string) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: name, AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: field}}
	}
	kindNS := &memdb.IndexSchema{
		Name: "kind_namespace",
		Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
			&memdb.StringFieldIndex{Field: "Kind"},
			&memdb.StringFieldIndex{Field: "Namespace"},
		}, AllowMissing: true},
	}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		TableIndex: {Name: TableIndex, Indexes: map[string]*memdb.IndexSchema{
			"id": id("Table"),
		}},
		TableObjects: {Name: TableObjects, Indexes: map[string]*memdb.IndexSchema{
			"id":             id("Key"),
			"namespace":      str("namespace", "Namespace"),
			"kind_namespace": kindNS,
		}},
		TableRevisions: {Name: TableRevisions, Indexes: map[string]*memdb.IndexSchema{
			"id":  {Name: "id", Unique: true, Indexer: &memdb.UintFieldIndex{Field: "ID"}},
			"sha": str("sha", "SHA"),
		}},
		TableSync: {Name: TableSync, Indexes: map[string]*memdb.IndexSchema{
			"id": id("Name"),
		}},
		TableNodes: {Name: TableNodes, Indexes: map[string]*memdb.IndexSchema{
			"id": id("Name"),
		}},
		// Pods are the biggest table (100,000 rows at scale): an index
		// costs some 450 bytes per row, so there is one. A namespace is a
		// prefix of the id; owners are found by a scan; the pods of a node
		// are one row of tableNodePods (see nodepods.go).
		TablePods: {Name: TablePods, Indexes: map[string]*memdb.IndexSchema{
			"id": id("Key"),
		}},
		tableNodePods: {Name: tableNodePods, Indexes: map[string]*memdb.IndexSchema{
			"id": id("Node"),
		}},
		TableLeases: {Name: TableLeases, Indexes: map[string]*memdb.IndexSchema{
			"id": id("Node"),
		}},
		// A few rows (the pods a scale-down delay keeps), read whole by
		// every pass: no index but the id.
		TableParked: {Name: TableParked, Indexes: map[string]*memdb.IndexSchema{
			"id": id("Key"),
		}},
		TableEndpoints: {Name: TableEndpoints, Indexes: map[string]*memdb.IndexSchema{
			"id":        id("Key"),
			"namespace": str("namespace", "Namespace"),
		}},
		// The last MaxEvents events, read by object for describe: a scan of
		// them takes some 60 µs (BenchmarkEventsOfObject), where an index by
		// object cost 4.5 MB at 100,000 pods.
		TableEvents: {Name: TableEvents, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: &memdb.UintFieldIndex{Field: "ID"}},
		}},
	}}
}

func mustValidSchema() (*memdb.DBSchema, error) {
	s := schema()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("store schema: %w", err)
	}
	return s, nil
}
