package store

import (
	"fmt"
	"slices"
	"strings"
)

// The pods of a node are what its agent asks for (GET /v1/pods?node=NAME,
// a blocking query each agent holds). A go-memdb index on the pods' node
// would answer it, at the cost of a radix leaf, two watch channels and a
// key per pod (some 450 bytes: 45 MB at 100,000 pods). Instead the store
// keeps one row per node listing its pods, tableNodePods, written in the
// same transaction as the pods: a query reads one row (the pods, in key
// order, with no lookup each) and watches it, and since every change to a
// pod bound to the node writes the row, the watch fires exactly when the
// node index's would. A transaction collects its changes to each node's
// list and writes each row once, at Commit (or before a read of its own
// that needs them), so a pass that binds 100,000 pods writes 5,000 rows.

// tableNodePods holds one nodePods row per node that has pods.
const tableNodePods = "nodepods"

// nodePods are the pods bound to one node, sorted by key. Rows are
// immutable once inserted, as all rows.
type nodePods struct {
	Node string
	Pods []*Pod
}

// nodePodsOf is the transaction's own copy of a node's pod list, which it
// may change until it writes it.
func (t *Txn) nodePodsOf(node string) ([]*Pod, error) {
	if ps, ok := t.nodePods[node]; ok {
		return ps, nil
	}
	raw, err := t.txn.First(tableNodePods, "id", node)
	if err != nil {
		return nil, fmt.Errorf("store: pods of node %s: %w", node, err)
	}
	var ps []*Pod
	if raw != nil {
		ps = slices.Clone(raw.(*nodePods).Pods)
	}
	if t.nodePods == nil {
		t.nodePods = map[string][]*Pod{}
	}
	t.nodePods[node] = ps
	return ps, nil
}

func searchPod(ps []*Pod, key string) (int, bool) {
	return slices.BinarySearchFunc(ps, key, func(p *Pod, k string) int { return strings.Compare(p.Key, k) })
}

// putNodePod puts p in its node's list, replacing the row of the same key.
func (t *Txn) putNodePod(p *Pod) error {
	ps, err := t.nodePodsOf(p.NodeName)
	if err != nil {
		return err
	}
	if i, found := searchPod(ps, p.Key); found {
		ps[i] = p
	} else {
		t.nodePods[p.NodeName] = slices.Insert(ps, i, p)
	}
	return nil
}

// removeNodePod takes the pod key off the list of node.
func (t *Txn) removeNodePod(node, key string) error {
	ps, err := t.nodePodsOf(node)
	if err != nil {
		return err
	}
	if i, found := searchPod(ps, key); found {
		t.nodePods[node] = slices.Delete(ps, i, i+1)
	}
	return nil
}

// writeNodePods writes the node lists the transaction changed.
func (t *Txn) writeNodePods() error {
	for node, ps := range t.nodePods {
		if len(ps) == 0 {
			if err := t.deleteByID(tableNodePods, node); err != nil {
				return err
			}
			continue
		}
		if cap(ps) > len(ps)+len(ps)/4+8 {
			ps = slices.Clone(ps) // do not keep what growing it left spare
		}
		if err := t.insert(tableNodePods, &nodePods{Node: node, Pods: slices.Clip(ps)}); err != nil {
			return err
		}
	}
	t.nodePods = nil
	return nil
}
