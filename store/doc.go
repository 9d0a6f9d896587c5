// Package store holds Keelson's state in memory: the desired objects of the
// applied Git revision, the history of revisions, and the observed state that
// agents report (nodes, pods, endpoints, events).
//
// It is a go-memdb database, following the Nomad state-store pattern:
//
//   - Every table has a modify index, kept in the "index" table and raised in
//     the same transaction that changes the table. Every row carries the index
//     of the transaction that created and last modified it. A table never
//     written has index 1 and writes start at 2: an index of 0 handed to a
//     client would make its next blocking query return at once.
//   - Objects read from the store are immutable: callers copy before changing
//     and write back through a write transaction.
//   - Reads take a memdb.WatchSet, so a caller can block until something it
//     read changes (see Store.Blocking); the API's blocking queries
//     (?index=N&wait=30s) are built on it.
//   - Pods, the largest table, are kept compact (pod.go): a row shares its
//     metadata and spec with the pods of its template and holds its status
//     encoded; Pod.Object builds the corev1.Pod the API serves. The pods of
//     a node are one row per node (nodepods.go) rather than an index.
//   - Lease renewals, the most frequent write, are rows of their own
//     (leases.go), so that they wake no one who watches the nodes.
//
// The store does not know where objects come from: the reconciler writes a
// whole revision in one transaction (ApplyRevision) or records it as failed
// and changes nothing else.
package store
