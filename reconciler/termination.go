package reconciler

import (
	"time"

	"github.com/keelson/keelson/store"
)

// terminationWait bounds how long a terminating pod waits for the nodes to
// program its removal from its services before its agent is told to stop
// it. Nodes answer in milliseconds; the bound is for a node that is slow or
// about to be declared lost.
const terminationWait = 2 * time.Second

// terminationPlan is what one pass does with pods on their way out.
type terminationPlan struct {
	gone   map[string]bool // rows deleted now: their agents stop them
	marked map[string]bool // rows made terminating now
}

// computeTermination decides, for the pods the controllers delete, whether
// they go at once or terminate first, and which terminating pods may go.
//
// A pod that may be taking connections (Ready, on a live node) is not
// stopped at once: it leaves its services' backends first (it becomes
// terminating, in the same transaction as the endpoints change), and its
// row goes — so its agent runs preStop and sends SIGTERM — only once every
// node that programs services has reported an index at or past that
// transaction, or terminationWait has passed. So no node sends a new
// connection to a pod that has begun to stop, and established ones finish
// within the grace period, as a rollout with no failed request needs.
// Pods that were not ready, that ended, that were never bound, or whose node
// is gone, go at once.
func computeTermination(pods []*store.Pod, nodes []*store.Node, deletes []string, now time.Time, cfg ClusterConfig) terminationPlan {
	t := terminationPlan{gone: map[string]bool{}, marked: map[string]bool{}}
	var byKey map[string]*store.Pod
	if len(deletes) > 0 {
		byKey = make(map[string]*store.Pod, len(pods))
		for _, p := range pods {
			byKey[p.Key] = p
		}
	}
	live := map[string]bool{}
	for _, n := range nodes {
		if nodeReady(n.Node) {
			live[n.Name] = true
		}
	}
	acked := func(idx uint64) bool {
		for _, n := range nodes {
			if live[n.Name] && n.ServicesIndex > 0 && n.ServicesIndex < idx {
				return false
			}
		}
		return true
	}
	for _, k := range deletes {
		p := byKey[k]
		if p == nil {
			continue
		}
		if p.NodeName == "" || !live[p.NodeName] || podEnded(p) || !p.Ready {
			t.gone[k] = true
		} else {
			t.marked[k] = true
		}
	}
	for _, p := range pods {
		if !p.Terminating() {
			continue
		}
		if !live[p.NodeName] || now.Sub(p.Termination.Since) >= terminationWait || acked(p.Termination.Index) {
			t.gone[p.Key] = true
		}
	}
	return t
}

// terminatingCopy is p made terminating at now, in the transaction index.
// The pod is served with its deletionTimestamp set (and the grace period of
// its spec), as Kubernetes shows a pod being deleted; its agent keeps
// running it until the row goes.
func terminatingCopy(p *store.Pod, now time.Time, index uint64) *store.Pod {
	c := *p
	c.Termination = &store.Termination{Since: now, Index: index}
	return &c
}

// ServicesSynced records that a node's agent has programmed the services
// and endpoints up to store index index (see computeTermination).
func (c *Cluster) ServicesSynced(name string, index uint64) error {
	txn := c.st.Write()
	defer txn.Abort()
	n, err := txn.Snapshot().Node(name)
	if err != nil {
		return err
	}
	if n.ServicesIndex >= index {
		return nil
	}
	x := *n
	x.ServicesIndex = index
	if err := txn.UpsertNode(&x); err != nil {
		return err
	}
	return txn.Commit()
}
