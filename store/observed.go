package store

import (
	"fmt"
	"sort"

	memdb "github.com/hashicorp/go-memdb"
)

// This file holds the tables of observed state that agents and controllers
// write: nodes, pods and endpoints.

// UpsertNode inserts or replaces a node, keeping its CreateIndex.
func (t *Txn) UpsertNode(n *Node) error {
	raw, err := t.txn.First(TableNodes, "id", n.Name)
	if err != nil {
		return fmt.Errorf("store: node %s: %w", n.Name, err)
	}
	n.CreateIndex = t.index
	if raw != nil {
		n.CreateIndex = raw.(*Node).CreateIndex
	}
	n.ModifyIndex = t.index
	return t.insert(TableNodes, n)
}

// DeleteNode removes a node and its lease; a missing node is not an error.
func (t *Txn) DeleteNode(name string) error {
	if err := t.deleteByID(TableLeases, name); err != nil {
		return err
	}
	return t.deleteByID(TableNodes, name)
}

// UpsertPod inserts or replaces a pod, keeping its CreateIndex.
func (t *Txn) UpsertPod(p *Pod) error {
	raw, err := t.txn.First(TablePods, "id", p.Key)
	if err != nil {
		return fmt.Errorf("store: pod %s: %w", p.Key, err)
	}
	p.CreateIndex = t.index
	if raw != nil {
		old := raw.(*Pod)
		p.CreateIndex = old.CreateIndex
		if old.NodeName != "" && old.NodeName != p.NodeName {
			if err := t.removeNodePod(old.NodeName, p.Key); err != nil {
				return err
			}
		}
	}
	p.ModifyIndex = t.index
	if p.NodeName != "" {
		if err := t.putNodePod(p); err != nil {
			return err
		}
	}
	return t.insert(TablePods, p)
}

// DeletePod removes a pod by namespace/name, with its parked row if it has
// one; a missing pod is not an error.
func (t *Txn) DeletePod(key string) error {
	raw, err := t.txn.First(TablePods, "id", key)
	if err != nil {
		return fmt.Errorf("store: pod %s: %w", key, err)
	}
	if raw == nil {
		return nil
	}
	if node := raw.(*Pod).NodeName; node != "" {
		if err := t.removeNodePod(node, key); err != nil {
			return err
		}
	}
	if err := t.txn.Delete(TablePods, raw); err != nil {
		return fmt.Errorf("store: delete %s %s: %w", TablePods, key, err)
	}
	t.dirty[TablePods] = true
	return t.UnparkPod(key) // a parked row goes with its pod
}

// UpsertEndpoints inserts or replaces a Service's endpoints.
func (t *Txn) UpsertEndpoints(e *Endpoints) error {
	raw, err := t.txn.First(TableEndpoints, "id", e.Key)
	if err != nil {
		return fmt.Errorf("store: endpoints %s: %w", e.Key, err)
	}
	e.CreateIndex = t.index
	if raw != nil {
		e.CreateIndex = raw.(*Endpoints).CreateIndex
	}
	e.ModifyIndex = t.index
	return t.insert(TableEndpoints, e)
}

// DeleteEndpoints removes a Service's endpoints; missing ones are not an error.
func (t *Txn) DeleteEndpoints(key string) error { return t.deleteByID(TableEndpoints, key) }

func (t *Txn) deleteByID(table, id string) error {
	raw, err := t.txn.First(table, "id", id)
	if err != nil {
		return fmt.Errorf("store: %s %s: %w", table, id, err)
	}
	if raw == nil {
		return nil
	}
	if err := t.txn.Delete(table, raw); err != nil {
		return fmt.Errorf("store: delete %s %s: %w", table, id, err)
	}
	t.dirty[table] = true
	return nil
}

// Nodes returns every node, sorted by name.
func (r *Snapshot) Nodes(ws memdb.WatchSet) ([]*Node, error) {
	it, err := r.txn.Get(TableNodes, "id")
	if err != nil {
		return nil, fmt.Errorf("store: nodes: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*Node
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Node))
	}
	return out, nil
}

// Node returns one node by name, or ErrNotFound.
func (r *Snapshot) Node(name string) (*Node, error) {
	raw, err := r.txn.First(TableNodes, "id", name)
	if err != nil {
		return nil, fmt.Errorf("store: node %s: %w", name, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("node %s: %w", name, ErrNotFound)
	}
	return raw.(*Node), nil
}

// PodQuery selects pods; empty fields match everything. The node's pod
// list or the namespace prefix of the id narrows the scan; the rest is
// filtered.
type PodQuery struct {
	Namespace string
	NodeName  string
	OwnerKey  string
}

// Pods returns the pods matching q, sorted by key.
func (r *Snapshot) Pods(ws memdb.WatchSet, q PodQuery) ([]*Pod, error) {
	if q.NodeName != "" {
		return r.nodePods(ws, q)
	}
	var (
		it  memdb.ResultIterator
		err error
	)
	switch {
	case q.Namespace != "":
		it, err = r.txn.Get(TablePods, "id_prefix", q.Namespace+"/")
	default:
		it, err = r.txn.Get(TablePods, "id")
	}
	if err != nil {
		return nil, fmt.Errorf("store: pods: %w", err)
	}
	ws.Add(it.WatchCh())
	all := q == PodQuery{}
	var out []*Pod
	if all {
		out = make([]*Pod, 0, r.s.podsLen.Load())
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		p := raw.(*Pod)
		if (q.Namespace != "" && p.Namespace != q.Namespace) ||
			(q.NodeName != "" && p.NodeName != q.NodeName) ||
			(q.OwnerKey != "" && p.OwnerKey != q.OwnerKey) {
			continue
		}
		out = append(out, p)
	}
	if all {
		r.s.podsLen.Store(int64(len(out)))
	}
	// Sorted by key already: the id index is the key and a NUL, and a radix
	// tree walks its keys in byte order (a key that is a prefix of another
	// comes first, as with strings). A pass reads all pods every 2 s, and
	// sorting them again compared 100,000 keys for nothing.
	return out, nil
}

// nodePods answers a query of the pods of one node from its row, which
// every change to one of them writes.
func (r *Snapshot) nodePods(ws memdb.WatchSet, q PodQuery) ([]*Pod, error) {
	if r.w != nil {
		if err := r.w.writeNodePods(); err != nil {
			return nil, err
		}
	}
	ch, raw, err := r.txn.FirstWatch(tableNodePods, "id", q.NodeName)
	if err != nil {
		return nil, fmt.Errorf("store: pods of node %s: %w", q.NodeName, err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, nil
	}
	var out []*Pod
	for _, p := range raw.(*nodePods).Pods {
		if (q.Namespace == "" || p.Namespace == q.Namespace) && (q.OwnerKey == "" || p.OwnerKey == q.OwnerKey) {
			out = append(out, p)
		}
	}
	return out, nil
}

// EndpointsOf returns a Service's endpoints (key namespace/name), or ErrNotFound.
func (r *Snapshot) EndpointsOf(ws memdb.WatchSet, key string) (*Endpoints, error) {
	ch, raw, err := r.txn.FirstWatch(TableEndpoints, "id", key)
	if err != nil {
		return nil, fmt.Errorf("store: endpoints %s: %w", key, err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, fmt.Errorf("endpoints %s: %w", key, ErrNotFound)
	}
	return raw.(*Endpoints), nil
}

// AllEndpoints returns the endpoints of every Service, or of one namespace
// when namespace is not empty, sorted by key.
func (r *Snapshot) AllEndpoints(ws memdb.WatchSet, namespace string) ([]*Endpoints, error) {
	var (
		it  memdb.ResultIterator
		err error
	)
	if namespace != "" {
		it, err = r.txn.Get(TableEndpoints, "namespace", namespace)
	} else {
		it, err = r.txn.Get(TableEndpoints, "id")
	}
	if err != nil {
		return nil, fmt.Errorf("store: endpoints: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*Endpoints
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Endpoints))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Pod returns one pod by namespace/name, or ErrNotFound.
func (r *Snapshot) Pod(ws memdb.WatchSet, key string) (*Pod, error) {
	ch, raw, err := r.txn.FirstWatch(TablePods, "id", key)
	if err != nil {
		return nil, fmt.Errorf("store: pod %s: %w", key, err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, fmt.Errorf("pod %s: %w", key, ErrNotFound)
	}
	return raw.(*Pod), nil
}
