package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/bits"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/reconciler/scheduler"
	"github.com/keelson/keelson/store"
)

// ClusterConfig configures the control loop.
type ClusterConfig struct {
	// ClusterCIDR is cut into one /24 per node for pod addresses.
	ClusterCIDR string
	// NodeLeaseTimeout marks a node NotReady; PodEvictionTimeout later
	// deletes its pods so that their owners replace them elsewhere.
	NodeLeaseTimeout   time.Duration
	PodEvictionTimeout time.Duration
	// StartupGrace is how long a starting controller waits for its agents'
	// reports before it creates or deletes pods, so that a restarted
	// controller adopts what runs instead of starting it again.
	StartupGrace time.Duration
	// AutoRollback returns a Deployment whose rollout failed to its previous
	// template (see autorollback.go); the Deployment's annotation
	// keelson.dev/auto-rollback overrides it.
	AutoRollback bool
	Log          *slog.Logger
	Now          func() time.Time
}

// Cluster runs the controllers and the scheduler over the store, and takes
// agents' registrations, leases and reports.
type Cluster struct {
	st   *store.Store
	cfg  ClusterConfig
	log  *slog.Logger
	now  func() time.Time
	cidr *net.IPNet
	// started is when this controller started; see StartupGrace.
	started time.Time
	// resources are the nodes' resource lists by their content, so that
	// nodes with the same capacity share one map (see sharedResources).
	mu        sync.Mutex
	resources map[string]corev1.ResourceList
	// adopted are the bases of pods adopted from their nodes' reports, by
	// owner (see adoptedBase).
	adopted map[string]*corev1.Pod

	// deleted holds the UIDs of pods this controller deleted, with when, so
	// that a status report crossing the deletion does not adopt the pod
	// again; forgotten after deletedMemory.
	delMu   sync.Mutex
	deleted map[types.UID]time.Time

	hashes hashMemo // the passes' template hashes
	// refused are the UIDs of pods a node reported that no one here wants,
	// already told as an event (one event a pod, not one a report).
	refused map[types.UID]bool

	// writes batches the agents' reports and lease renewals.
	writes *groupWriter
}

// deletedMemory is how long the controller remembers a pod it deleted.
const deletedMemory = 10 * time.Minute

func (c *Cluster) rememberDeleted(uids []types.UID) {
	c.delMu.Lock()
	defer c.delMu.Unlock()
	now := c.now()
	if c.deleted == nil {
		c.deleted = map[types.UID]time.Time{}
	}
	for uid, t := range c.deleted {
		if now.Sub(t) > deletedMemory {
			delete(c.deleted, uid)
		}
	}
	for _, u := range uids {
		c.deleted[u] = now
	}
}

func (c *Cluster) deletedRecently(uid types.UID) bool {
	c.delMu.Lock()
	defer c.delMu.Unlock()
	_, ok := c.deleted[uid]
	return ok
}

// warm reports whether the controller has waited for its agents and holds
// an applied revision, so that it may create and delete pods.
func (c *Cluster) warm(snap *store.Snapshot, ws memdb.WatchSet) bool {
	if c.now().Sub(c.started) < c.cfg.StartupGrace {
		return false
	}
	rev, err := snap.LastRevision(ws, store.RevisionApplied)
	return err == nil && rev != nil
}

// podTemplateHashLabel is the label of pods and ReplicaSets made from one
// Deployment template, as in Kubernetes.
const podTemplateHashLabel = "pod-template-hash"

// NewCluster returns the control loop over st.
func NewCluster(st *store.Store, cfg ClusterConfig) (*Cluster, error) {
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = "10.244.0.0/16"
	}
	if cfg.NodeLeaseTimeout == 0 {
		cfg.NodeLeaseTimeout = 40 * time.Second
	}
	if cfg.PodEvictionTimeout == 0 {
		cfg.PodEvictionTimeout = 60 * time.Second
	}
	if cfg.StartupGrace == 0 {
		cfg.StartupGrace = 2 * time.Second
	}
	_, cidr, err := net.ParseCIDR(cfg.ClusterCIDR)
	if err != nil || cidr.IP.To4() == nil {
		return nil, fmt.Errorf("--cluster-cidr %q: want an IPv4 CIDR such as 10.244.0.0/16", cfg.ClusterCIDR)
	}
	if ones, _ := cidr.Mask.Size(); ones > 23 {
		return nil, fmt.Errorf("--cluster-cidr %q: too small to give each node a /24", cfg.ClusterCIDR)
	}
	c := &Cluster{st: st, cfg: cfg, log: cfg.Log, now: cfg.Now, cidr: cidr}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.started = c.now()
	c.writes = newGroupWriter(st, c.log, maxWriteBatch)
	return c, nil
}

// Register adds or refreshes a node and gives it a pod CIDR (the one it
// had, if it registered before).
func (c *Cluster) Register(_ context.Context, reg *api.NodeRegistration) (*corev1.Node, error) {
	n := reg.Node.DeepCopy()
	if errs := validation.IsDNS1123Subdomain(n.Name); len(errs) > 0 {
		return nil, fmt.Errorf("node name %q: %s", n.Name, errs[0])
	}
	txn := c.st.Write()
	defer txn.Abort()
	snap := txn.Snapshot()
	nodes, err := snap.Nodes(memdb.NewWatchSet())
	if err != nil {
		return nil, err
	}
	// The /24s other nodes have, by their number in the cluster CIDR.
	used := make([]uint64, (c.subnets()+63)/64)
	var prev *store.Node
	for _, x := range nodes {
		if x.Name == n.Name {
			prev = x
			continue
		}
		if i, ok := c.subnetIndex(x.Node.Spec.PodCIDR); ok {
			used[i/64] |= 1 << (i % 64)
		}
	}
	switch {
	case prev != nil && prev.Node.Spec.PodCIDR != "":
		n.Spec.PodCIDR = prev.Node.Spec.PodCIDR
	default:
		cidr, err := c.freeCIDR(used)
		if err != nil {
			return nil, err
		}
		n.Spec.PodCIDR = cidr
	}
	n.Spec.PodCIDRs = []string{n.Spec.PodCIDR}
	n.Status.Capacity = c.sharedResources(n.Status.Capacity)
	n.Status.Allocatable = c.sharedResources(n.Status.Allocatable)
	now := c.now()
	setReady(n, true, "KeelsonAgentReady", "agent registered", now)
	if n.UID == "" {
		n.UID = types.UID(uuid.NewUUID())
	}
	if prev != nil {
		n.UID = prev.Node.UID
		n.CreationTimestamp = prev.Node.CreationTimestamp
	} else {
		n.CreationTimestamp = metav1.NewTime(now)
	}
	if err := txn.UpsertNode(&store.Node{Name: n.Name, Node: n, API: reg.API, LeaseRenewed: now}); err != nil {
		return nil, err
	}
	if err := txn.AddEvent(&store.Event{ObjectKey: "Node/" + n.Name, Type: corev1.EventTypeNormal, Reason: "Registered", Message: fmt.Sprintf("node %s joined with pod CIDR %s", n.Name, n.Spec.PodCIDR)}, now); err != nil {
		return nil, err
	}
	if err := txn.Commit(); err != nil {
		return nil, err
	}
	c.log.Info("node registered", "node", n.Name, "pod-cidr", n.Spec.PodCIDR, "api", reg.API)
	return n, nil
}

// sharedResources is l, or an equal list (the same quantities, written
// the same way) that another node has: nodes of one kind have the same
// capacity, and each map costs more than half a kilobyte a node. Lists in
// the store are never changed, so they may be shared.
func (c *Cluster) sharedResources(l corev1.ResourceList) corev1.ResourceList {
	if len(l) == 0 {
		return l
	}
	names := make([]string, 0, len(l))
	for name := range l {
		names = append(names, string(name))
	}
	sort.Strings(names)
	var key strings.Builder
	for _, name := range names {
		q := l[corev1.ResourceName(name)]
		key.WriteString(name + "=" + q.String() + ",")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if shared, ok := c.resources[key.String()]; ok {
		return shared
	}
	if c.resources == nil || len(c.resources) >= 1024 {
		c.resources = map[string]corev1.ResourceList{} // so many kinds of node: start again
	}
	c.resources[key.String()] = l
	return l
}

// subnets is how many /24s the cluster CIDR has.
func (c *Cluster) subnets() int {
	ones, _ := c.cidr.Mask.Size()
	return 1 << (24 - ones)
}

// subnetIndex is the number of cidr among the cluster CIDR's /24s, if it is
// one of them.
func (c *Cluster) subnetIndex(cidr string) (int, bool) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() || p.Bits() != 24 || p.Masked() != p {
		return 0, false
	}
	a := p.Addr().As4()
	off := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8) - ipToUint(c.cidr.IP) // wraps when below
	if i := int(off >> 8); i < c.subnets() {
		return i, true
	}
	return 0, false
}

// freeCIDR is the first /24 of the cluster CIDR no node has (used holds a
// bit for each, by subnetIndex).
func (c *Cluster) freeCIDR(used []uint64) (string, error) {
	for w, set := range used {
		if i := w*64 + bits.TrailingZeros64(^set); set != math.MaxUint64 && i < c.subnets() {
			ip := uintToIP(ipToUint(c.cidr.IP) + uint32(i)<<8)
			return (&net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}).String(), nil
		}
	}
	return "", fmt.Errorf("cluster CIDR %s is exhausted: every /24 is given to a node", c.cfg.ClusterCIDR)
}

func ipToUint(ip net.IP) uint32 {
	v := ip.To4()
	return uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
}

func uintToIP(v uint32) net.IP { return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)) }

func setReady(n *corev1.Node, ready bool, reason, msg string, now time.Time) {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	for i := range n.Status.Conditions {
		c := &n.Status.Conditions[i]
		if c.Type == corev1.NodeReady {
			if c.Status != st {
				c.LastTransitionTime = metav1.NewTime(now)
			}
			c.Status, c.Reason, c.Message, c.LastHeartbeatTime = st, reason, msg, metav1.NewTime(now)
			return
		}
	}
	n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady, Status: st, Reason: reason, Message: msg,
		LastHeartbeatTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now)})
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// RenewLease records an agent's heartbeat. It copies the node's row, not
// its corev1.Node, unless the node comes back Ready.
func (c *Cluster) RenewLease(_ context.Context, name string) error {
	return c.writes.write(func(txn *store.Txn) (error, error) { return c.renewIn(txn, name) })
}

// renewIn renews a node's lease in txn; answer is why not (the node has not
// registered), err a store error.
func (c *Cluster) renewIn(txn *store.Txn, name string) (answer, err error) {
	x, err := txn.Snapshot().Node(name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("node %s has not registered: %w", name, store.ErrNotFound), nil
	}
	if err != nil {
		return nil, err
	}
	now := c.now()
	if !nodeReady(x.Node) {
		// Only a node coming back changes its row (and wakes whoever
		// watches the nodes); a renewal alone is a lease row.
		n := *x
		n.Node = x.Node.DeepCopy()
		setReady(n.Node, true, "KeelsonAgentReady", "agent renewed its lease", now)
		n.LeaseRenewed = now
		_ = txn.AddEvent(&store.Event{ObjectKey: "Node/" + name, Type: corev1.EventTypeNormal, Reason: "NodeReady", Message: "node " + name + " is back"}, now)
		if err := txn.UpsertNode(&n); err != nil {
			return nil, err
		}
	}
	return nil, txn.RenewLease(name, now)
}

// ReportPod takes an agent's status of a pod. A pod the controller does not
// know (it restarted) is adopted when its owner still wants it.
//
// Reports, and lease renewals, that arrive together are written together
// (group commit, see groupWriter): a node starting fifty pods, or 5,000
// nodes reporting at once, costs one write (one copy of the pods' index
// path, one wake of every watcher) a batch, not one a pod; a lone report
// waits for nothing.
func (c *Cluster) ReportPod(_ context.Context, node string, reported *corev1.Pod) error {
	return c.writes.write(func(txn *store.Txn) (error, error) { return c.reportIn(txn, node, reported) })
}

// reportIn applies one report in txn. answer is what the node is told of its
// pod (nil when taken; why not, when refused); err is a store error, which
// spoils the transaction.
func (c *Cluster) reportIn(txn *store.Txn, node string, reported *corev1.Pod) (answer, err error) {
	key := reported.Namespace + "/" + reported.Name
	snap := txn.Snapshot()
	cur, err := snap.Pod(memdb.NewWatchSet(), key)
	switch {
	case err == nil:
		if cur.UID != reported.UID {
			return c.refuse(txn, node, reported, fmt.Errorf("pod %s: reported UID %s, the controller has %s: stop it", key, reported.UID, cur.UID)), nil
		}
		if cur.NodeName != node {
			// Only the node a pod is bound to says how it is.
			return c.refuse(txn, node, reported, fmt.Errorf("pod %s is bound to node %q, not %s: stop it", key, cur.NodeName, node)), nil
		}
		p := *cur // only the status changes
		st := reported.Status
		if st.Conditions != nil {
			had := cur.Status().Conditions
			st.Conditions = keepTransitionTimes(mergeScheduled(st.Conditions, had), had, c.now())
		}
		p.SetStatus(&st)
		if equality.Semantic.DeepEqual(p.Status(), cur.Status()) {
			// What the node said before: no write, so no one watching the
			// pods wakes (the node itself among them, which would publish
			// and report again: a loop).
			return nil, nil
		}
		if err := txn.UpsertPod(&p); err != nil {
			return nil, err
		}
	default:
		owner := controllerOf(reported)
		if owner == "" {
			owner = "Pod/" + key
		}
		if c.deletedRecently(reported.UID) {
			// A report that crossed the pod's deletion: not to be adopted again.
			return fmt.Errorf("pod %s on node %s was deleted by the controller: stop it", key, node), nil
		}
		if _, oerr := snap.Object(memdb.NewWatchSet(), owner); oerr != nil && c.warm(snap, memdb.NewWatchSet()) {
			return c.refuse(txn, node, reported, fmt.Errorf("pod %s on node %s: no owner %s wants it: stop it", key, node, owner)), nil
		}
		// Any other pod this controller does not know (one that was
		// starting when it restarted, say) is adopted: if its owner has too
		// many, it scales down through the usual path (the pod leaves its
		// services first), rather than being stopped at once.
		p := reported.DeepCopy()
		p.Spec.NodeName = node
		p.Status.Conditions = keepTransitionTimes(p.Status.Conditions, nil, c.now())
		ownerKey := owner
		if owner == "Pod/"+key {
			ownerKey = ""
		}
		row := store.NewPod(p)
		row.OwnerKey = ownerKey
		if ownerKey != "" {
			row.Base = c.adoptedBase(ownerKey, row.Base)
		}
		if err := txn.UpsertPod(row); err != nil {
			return nil, err
		}
		c.log.Info("pod adopted from its node's report", "pod", key, "node", node)
	}
	return nil, nil
}

// refuse answers a node's report of a pod that no one here wants with err,
// and tells it once as a Warning event of the node, written with txn (the
// agent stops the pod, which is in no desired set; nothing else changes).
func (c *Cluster) refuse(txn *store.Txn, node string, reported *corev1.Pod, err error) error {
	c.delMu.Lock()
	first := !c.refused[reported.UID]
	if first {
		if c.refused == nil || len(c.refused) > 10000 {
			c.refused = map[types.UID]bool{}
		}
		c.refused[reported.UID] = true
	}
	c.delMu.Unlock()
	if first {
		c.log.Warn("a node reported a pod no one wants", "node", node, "err", err)
		_ = txn.AddEvent(&store.Event{ObjectKey: "Node/" + node, Type: corev1.EventTypeWarning, Reason: "UnknownPod", Message: err.Error()}, c.now())
	}
	return err
}

// adoptedBase is the Base of a pod adopted from its node's report: the one
// another pod of the same owner adopted before it has, when the two are the
// same but for what each row holds of its own (name, UID, creation time,
// node), so that a restarted controller holds one template for a
// ReplicaSet's pods, as the controller that made them did, rather than one
// a pod. The last base of each owner is kept to compare the next with.
func (c *Cluster) adoptedBase(owner string, base *corev1.Pod) *corev1.Pod {
	b := *base
	b.Name, b.UID, b.CreationTimestamp, b.Spec.NodeName = "", "", metav1.Time{}, ""
	c.mu.Lock()
	defer c.mu.Unlock()
	if shared, ok := c.adopted[owner]; ok && reflect.DeepEqual(shared, &b) {
		return shared
	}
	if c.adopted == nil || len(c.adopted) >= 4096 {
		c.adopted = map[string]*corev1.Pod{} // so many owners: start again
	}
	c.adopted[owner] = &b
	return &b
}

// mergeScheduled keeps the controller's PodScheduled condition beside the
// agent's conditions.
func mergeScheduled(reported, cur []corev1.PodCondition) []corev1.PodCondition {
	out := make([]corev1.PodCondition, 0, len(reported)+1)
	for _, c := range reported {
		if c.Type != corev1.PodScheduled {
			out = append(out, c)
		}
	}
	for _, c := range cur {
		if c.Type == corev1.PodScheduled {
			out = append(out, c)
		}
	}
	return out
}

// keepTransitionTimes gives the reported conditions the lastTransitionTime
// they had (in cur) when their status did not change (unless the report's
// is earlier), and the time of the report when they carry none, so that
// "Ready since" means what it says however often an agent reports:
// minReadySeconds counts from it.
func keepTransitionTimes(reported, cur []corev1.PodCondition, now time.Time) []corev1.PodCondition {
	if len(reported) == 0 {
		return reported
	}
	out := make([]corev1.PodCondition, len(reported))
	copy(out, reported)
	for i := range out {
		c := &out[i]
		for _, old := range cur {
			if old.Type == c.Type && old.Status == c.Status && !old.LastTransitionTime.IsZero() &&
				(c.LastTransitionTime.IsZero() || old.LastTransitionTime.Before(&c.LastTransitionTime)) {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = metav1.NewTime(now)
		}
	}
	return out
}

// ForgetPod is an agent's word that a pod is gone from its node. For a pod
// the controller deleted, its row is gone already; a pod the controller
// still has there (with that UID) was lost by its node: its row goes, so
// that its owner replaces it, as Kubernetes replaces a deleted pod.
func (c *Cluster) ForgetPod(_ context.Context, node, namespace, name, uid string) error {
	key := namespace + "/" + name
	txn := c.st.Write()
	defer txn.Abort()
	cur, err := txn.Snapshot().Pod(memdb.NewWatchSet(), key)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.NodeName != node || (uid != "" && string(cur.UID) != uid) {
		return nil // another pod of that name
	}
	if err := txn.DeletePod(key); err != nil {
		return err
	}
	msg := fmt.Sprintf("node %s no longer runs pod %s", node, key)
	if cur.OwnerKey != "" {
		msg += ": its owner " + cur.OwnerKey + " replaces it"
	}
	if err := txn.AddEvent(&store.Event{ObjectKey: "Pod/" + key, Type: corev1.EventTypeWarning, Reason: "PodLost", Message: msg}, c.now()); err != nil {
		return err
	}
	if err := txn.Commit(); err != nil {
		return err
	}
	c.rememberDeleted([]types.UID{cur.UID})
	c.log.Warn("a node lost a pod", "node", node, "pod", key)
	return nil
}

// controllerOf is the Key of the object that controls p, or "".
func controllerOf(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return o.Kind + "/" + p.Namespace + "/" + o.Name
		}
	}
	return ""
}

// Run reconciles until ctx ends: each time the objects, pods or nodes
// change, and every few seconds for node leases.
func (c *Cluster) Run(ctx context.Context) error {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		ws := memdb.NewWatchSet()
		start := time.Now()
		if err := c.reconcileOnce(ws); err != nil {
			c.log.Error("reconcile", "err", err)
		}
		// Changes come in bursts (a revision, nodes joining, many reports):
		// take them together, and leave at least as much time to the rest
		// of the controller as the pass took.
		select {
		case <-time.After(max(debounce, time.Since(start))):
		case <-ctx.Done():
			return nil
		}
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-tick.C:
			case <-wctx.Done():
			}
			cancel()
		}()
		_ = ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// withLeases returns nodes with each one's LeaseRenewed at its latest
// renewal (rows that change are copies).
func withLeases(nodes []*store.Node, leases map[string]time.Time) []*store.Node {
	for i, n := range nodes {
		if t, ok := leases[n.Name]; ok && t.After(n.LeaseRenewed) {
			x := *n
			x.LeaseRenewed = t
			nodes[i] = &x
		}
	}
	return nodes
}

// reconcileOnce makes one pass over a snapshot and writes the result in one
// transaction.
func (c *Cluster) reconcileOnce(ws memdb.WatchSet) error {
	now := c.now()
	txn := c.st.Write()
	defer txn.Abort()
	snap := txn.Snapshot()
	objs, err := snap.Objects(ws, store.ObjectQuery{})
	if err != nil {
		return err
	}
	pods, err := snap.Pods(ws, store.PodQuery{})
	if err != nil {
		return err
	}
	nodes, err := snap.Nodes(ws)
	if err != nil {
		return err
	}
	// Renewals are read, not watched: the pass every two seconds finds the
	// leases that ran out.
	leases, err := snap.Leases(len(nodes))
	if err != nil {
		return err
	}
	nodes = withLeases(nodes, leases)
	eps, err := snap.AllEndpoints(ws, "")
	if err != nil {
		return err
	}
	revs, err := snap.Revisions(ws, maxTrackedRevisions)
	if err != nil {
		return err
	}
	parked, err := snap.ParkedPods(ws)
	if err != nil {
		return err
	}
	warm := c.warm(snap, ws)
	// Events are looked up, not watched: they are the passes' output.
	reported := func(key, reason, message string) bool {
		evs, err := snap.Events(memdb.NewWatchSet(), key)
		if err != nil {
			return false
		}
		return slices.ContainsFunc(evs, func(e *store.Event) bool { return e.Reason == reason && e.Message == message })
	}
	plan := computeCluster(objs, pods, parked, nodes, now, c.cfg, warm, reported, &c.hashes)
	outcomes := computeOutcomes(revs, objs, pods, now)
	term := computeTermination(pods, nodes, plan.deletePods, now, c.cfg)
	var markWarm *store.SyncState
	if warm {
		// Endpoints only once the agents have reported their pods: a
		// restarted controller publishes whole endpoints or none, so no
		// node drops a service's backends while the controller returns.
		// Pods deleted now and parked ones are left out.
		leftOut := parkedAfter(parked, plan)
		for k := range term.gone {
			leftOut[k] = true
		}
		ep := computeEndpoints(objs, pods, leftOut, term.marked, eps)
		plan.upsertEndpoints, plan.deleteEndpoints = ep.upserts, ep.deletes
		plan.events = append(plan.events, ep.events...)
		if sync, err := snap.Sync(ws); err == nil && sync != nil && sync.WarmSince.IsZero() {
			x := *sync
			x.WarmSince = now
			markWarm = &x
		}
	}
	if plan.empty() && len(term.gone) == 0 && len(outcomes) == 0 && markWarm == nil {
		return nil
	}
	if markWarm != nil {
		if err := txn.SetSync(markWarm); err != nil {
			return err
		}
	}
	for _, r := range outcomes {
		if err := txn.UpdateRevision(r); err != nil {
			return err
		}
	}
	for _, o := range plan.upsertObjects {
		if err := txn.UpsertObject(o); err != nil {
			return err
		}
	}
	for _, k := range plan.deleteObjects {
		if err := txn.DeleteObject(k); err != nil {
			return err
		}
	}
	// pods is sorted by key: a search finds the few a pass writes, where a
	// map of all of them made 5 MB of garbage a pass at 100,000 pods.
	podOfKey := func(k string) *store.Pod {
		if i, ok := slices.BinarySearchFunc(pods, k, func(p *store.Pod, k string) int { return strings.Compare(p.Key, k) }); ok {
			return pods[i]
		}
		return nil
	}
	var goneUIDs []types.UID
	for k := range term.gone {
		if err := txn.DeletePod(k); err != nil {
			return err
		}
		if p := podOfKey(k); p != nil {
			goneUIDs = append(goneUIDs, p.UID)
		}
	}
	for k := range term.marked {
		if err := txn.UpsertPod(terminatingCopy(podOfKey(k), now, txn.Index())); err != nil {
			return err
		}
	}
	for _, k := range plan.unpark {
		if err := txn.UnparkPod(k); err != nil {
			return err
		}
	}
	for _, r := range plan.park {
		if term.gone[r.Key] {
			continue // a parked row never outlives its pod
		}
		if err := txn.ParkPod(r); err != nil {
			return err
		}
	}
	for _, p := range plan.upsertPods {
		if cur := podOfKey(p.Key); (cur != nil && cur.Terminating()) || term.gone[p.Key] || term.marked[p.Key] {
			// The name is still taken by a pod on its way out (a StatefulSet
			// or bare pod made again): it is made once that one is gone.
			continue
		}
		if err := txn.UpsertPod(p); err != nil {
			return err
		}
	}
	for _, n := range plan.upsertNodes {
		if err := txn.UpsertNode(n); err != nil {
			return err
		}
	}
	for _, e := range plan.upsertEndpoints {
		if err := txn.UpsertEndpoints(e); err != nil {
			return err
		}
	}
	for _, k := range plan.deleteEndpoints {
		if err := txn.DeleteEndpoints(k); err != nil {
			return err
		}
	}
	if err := txn.AddEvents(plan.events, now); err != nil {
		return err
	}
	if err := txn.Commit(); err != nil {
		return err
	}
	c.rememberDeleted(goneUIDs)
	return nil
}

// clusterPlan is what one pass changes.
type clusterPlan struct {
	upsertObjects []*store.Object
	deleteObjects []string
	upsertPods    []*store.Pod
	deletePods    []string
	upsertNodes   []*store.Node
	events        []*store.Event
	// The scale-down delay's changes to the parked table (park.go).
	park   []*store.ParkedPod
	unpark []string
	// The endpoints controller's part (see computeEndpoints).
	upsertEndpoints []*store.Endpoints
	deleteEndpoints []string
}

func (p *clusterPlan) empty() bool {
	return len(p.upsertObjects)+len(p.deleteObjects)+len(p.upsertPods)+len(p.deletePods)+len(p.upsertNodes)+len(p.events)+
		len(p.upsertEndpoints)+len(p.deleteEndpoints)+len(p.park)+len(p.unpark) == 0
}

// computeCluster is the controllers and the scheduler as one pure function
// of a snapshot and the time. Parked pods (park.go) are apart: they count
// as no one's replica.
// Before the controller is warm (see Cluster.warm), it keeps node leases but
// neither creates nor deletes pods, and leaves Deployments' ReplicaSets
// alone (the first warm pass rebuilds those a restart lost from the
// adopted pods).
func computeCluster(objs []*store.Object, pods []*store.Pod, parked []*store.ParkedPod, nodes []*store.Node, now time.Time, cfg ClusterConfig, warm bool, reported eventLookup, hashes *hashMemo) *clusterPlan {
	hashes.rotate()
	plan := &clusterPlan{}
	defer func() {
		if !warm {
			plan.upsertPods, plan.deletePods = nil, nil
			plan.park, plan.unpark = nil, nil
			var evs []*store.Event
			for _, e := range plan.events {
				if e.Reason == "NodeNotReady" {
					evs = append(evs, e)
				}
			}
			plan.events = evs
		}
	}()
	byKey := map[string]*store.Object{}
	for _, o := range objs {
		byKey[o.Key] = o
	}
	pk := newParking(parked, pods)
	podsByOwner := groupByOwner(pods, func(p *store.Pod) bool { return !pk.isParked(p.Key) })
	// Terminating pods are already on their way out: the controllers count
	// them as gone (the scheduler still counts what they hold on their node).
	deleted := map[string]bool{}
	for _, p := range pods {
		if p.Terminating() {
			deleted[p.Key] = true
		}
	}
	deletePod := func(p *store.Pod, reason string) {
		if !deleted[p.Key] {
			deleted[p.Key] = true
			plan.deletePods = append(plan.deletePods, p.Key)
			plan.events = append(plan.events, &store.Event{ObjectKey: "Pod/" + p.Key, Type: corev1.EventTypeNormal, Reason: "Deleted", Message: reason})
		}
	}

	// Node lifecycle: leases, then eviction.
	dead := map[string]bool{}
	for _, n := range nodes {
		age := now.Sub(n.LeaseRenewed)
		if age > cfg.NodeLeaseTimeout && nodeReady(n.Node) {
			x := *n
			x.Node = n.Node.DeepCopy()
			setReady(x.Node, false, "NodeStatusUnknown", fmt.Sprintf("no lease for %s", age.Round(time.Second)), now)
			plan.upsertNodes = append(plan.upsertNodes, &x)
			plan.events = append(plan.events, &store.Event{ObjectKey: "Node/" + n.Name, Type: corev1.EventTypeWarning, Reason: "NodeNotReady", Message: fmt.Sprintf("node %s has not renewed its lease for %s", n.Name, age.Round(time.Second))})
		}
		if age > cfg.NodeLeaseTimeout+cfg.PodEvictionTimeout {
			dead[n.Name] = true
		}
	}
	for _, p := range pods {
		if p.NodeName != "" && dead[p.NodeName] && !staysOnItsNode(p) {
			deletePod(p, fmt.Sprintf("evicted: node %s is gone", p.NodeName))
		}
	}

	// Deployments own ReplicaSets named by their template's hash, and roll
	// from one to the next (rollout.go).
	rsList := deployments(plan, objs, byKey, podsByOwner, pk, deleted, deletePod, now, warm, cfg.AutoRollback, hashes)
	running := make(map[string]bool, len(rsList))
	for _, o := range rsList {
		running[o.Key] = true
	}

	// ReplicaSets → pods.
	var live []*store.Pod // one buffer for every ReplicaSet: a pass reads all pods
	for _, o := range rsList {
		rs := o.Obj.(*appsv1.ReplicaSet)
		live = live[:0]
		for _, p := range podsByOwner[o.Key] {
			if !deleted[p.Key] && p.Phase != string(corev1.PodFailed) && p.Phase != string(corev1.PodSucceeded) {
				live = append(live, p)
			} else if !deleted[p.Key] {
				deletePod(p, "pod ended; its ReplicaSet replaces it")
			}
		}
		want := 1
		if rs.Spec.Replicas != nil {
			want = int(*rs.Spec.Replicas)
		}
		kept := pk.sweep(o.Key, deleted, deletePod, now)
		switch {
		case len(live) < want:
			// Its parked pods come back before any pod is made.
			have := len(live) + pk.takeBack(plan, o, kept, want-len(live))
			base := podBase(o, &rs.Spec.Template)
			for i := have; i < want; i++ {
				plan.upsertPods = append(plan.upsertPods, podOf(o, base, "", now))
			}
		case len(live) > want:
			sortForDeletion(live)
			for _, p := range live[:len(live)-want] {
				if !pk.parkOne(plan, o, p, now) {
					deletePod(p, fmt.Sprintf("its ReplicaSet %s was scaled down to %d", o.Name, want))
				}
			}
		}
	}
	pk.orphans(running, deleted, deletePod)

	daemonSets(plan, objs, podsByOwner, nodes, deleted, deletePod, now, warm)
	statefulSets(plan, objs, podsByOwner, deleted, deletePod, now)
	cronJobs(plan, objs, byKey, now, reported)
	jobs(plan, objs, podsByOwner, deleted, deletePod, now)
	// Objects a controller made whose owner is gone (a ReplicaSet of a
	// removed Deployment is handled above with its pods; Jobs of a CronJob here).
	for _, o := range objs {
		if _, isRS := o.Obj.(*appsv1.ReplicaSet); o.OwnerKey != "" && !isRS && byKey[o.OwnerKey] == nil {
			plan.deleteObjects = append(plan.deleteObjects, o.Key)
		}
	}

	// Bare pods from Git.
	for _, o := range objs {
		gp, ok := o.Obj.(*corev1.Pod)
		if !ok || o.OwnerKey != "" {
			continue
		}
		key := o.Namespace + "/" + o.Name
		var cur *store.Pod
		for _, p := range podsByOwner[""] {
			if p.Key == key {
				cur = p
			}
		}
		if cur != nil && cur.Base.Annotations[sourceHashAnnotation] == o.Hash {
			continue
		}
		if cur != nil {
			deletePod(cur, "its manifest changed")
		}
		p := gp.DeepCopy()
		p.UID = types.UID(uuid.NewUUID())
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[sourceHashAnnotation] = o.Hash
		p.CreationTimestamp = metav1.NewTime(now)
		p.Status = corev1.PodStatus{}
		if cur == nil {
			plan.upsertPods = append(plan.upsertPods, &store.Pod{Key: key, Namespace: p.Namespace, Name: p.Name, NodeName: p.Spec.NodeName,
				Phase: string(corev1.PodPending), Base: p, UID: p.UID, Created: store.StampOf(now)})
		}
		// A changed bare pod is recreated on the next pass, once the old one is gone.
	}
	// Bare pods whose manifest left Git, and pods of owners that are gone.
	for _, p := range pods {
		if p.OwnerKey == "" {
			if o := byKey["Pod/"+p.Key]; o == nil {
				deletePod(p, "its manifest was removed from Git")
			}
			continue
		}
		if byKey[p.OwnerKey] == nil && !running[p.OwnerKey] && !deleted[p.Key] {
			deletePod(p, "its owner "+p.OwnerKey+" is gone")
		}
	}

	// Every node serves every Ingress: their status lists the nodes.
	var st *networkingv1.IngressStatus
	for _, o := range objs {
		if _, ok := o.Obj.(*networkingv1.Ingress); ok {
			if st == nil {
				x := ingressStatus(nodes)
				st = &x
			}
			plan.setStatus(o, st)
		}
	}

	schedule(plan, pods, nodes, deleted, now)
	return plan
}

const sourceHashAnnotation = "keelson.dev/source-hash"

// debounce is how long the loop lets changes gather before a pass.
const debounce = 20 * time.Millisecond

// templateHash names a Deployment's ReplicaSet for its pod template.
func templateHash(d *appsv1.Deployment) string {
	b, _ := json.Marshal(d.Spec.Template)
	h := fnv.New32a()
	h.Write(b)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// hashMemo is a Cluster's memory of the template hashes of the Deployments
// its last two passes hashed. Every pass hashes every Deployment (a JSON
// encoding of its template each: at 1,000 Deployments, 1.6 MB of garbage a
// second with nothing changing), and a Deployment read from the store is
// never changed, so its pointer stands for its template. A pass rotates it
// (computeCluster), so it holds no Deployment that two passes in a row did
// not read. A nil memo remembers nothing.
type hashMemo struct {
	mu        sync.Mutex
	cur, prev map[*appsv1.Deployment]string
}

func (m *hashMemo) get(d *appsv1.Deployment) string {
	if m == nil {
		return templateHash(d)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.cur[d]
	if !ok {
		if h, ok = m.prev[d]; !ok {
			h = templateHash(d)
		}
		if m.cur == nil {
			m.cur = map[*appsv1.Deployment]string{}
		}
		m.cur[d] = h
	}
	return h
}

// rotate forgets what was not asked for since the rotation before.
func (m *hashMemo) rotate() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.prev, m.cur = m.cur, make(map[*appsv1.Deployment]string, len(m.cur))
	m.mu.Unlock()
}

// groupByOwner is the pods that keep holds, by their OwnerKey, each owner's
// in the order of pods. The groups are carved from one array (a pass reads
// every pod every 2 s: appending to each group in turn made twice the
// garbage), each with no room past its end, so that appending to one
// copies it.
func groupByOwner(pods []*store.Pod, keep func(*store.Pod) bool) map[string][]*store.Pod {
	counts := map[string]int{}
	n := 0
	for _, p := range pods {
		if keep(p) {
			counts[p.OwnerKey]++
			n++
		}
	}
	buf := make([]*store.Pod, n)
	out := make(map[string][]*store.Pod, len(counts))
	at := 0
	for k, c := range counts {
		out[k] = buf[at : at : at+c]
		at += c
	}
	for _, p := range pods {
		if keep(p) {
			out[p.OwnerKey] = append(out[p.OwnerKey], p)
		}
	}
	return out
}

func replicaSetName(d *appsv1.Deployment) string { return d.Name + "-" + templateHash(d) }

// replicaSetFor is a new ReplicaSet of d for its current template (whose
// hash is hash), made at created, with no replicas yet.
func replicaSetFor(d *appsv1.Deployment, o *store.Object, hash string, created time.Time) *store.Object {
	tmpl := *d.Spec.Template.DeepCopy()
	tmpl.Labels = withLabel(d.Spec.Template.Labels, podTemplateHashLabel, hash)
	return newReplicaSetObject(d, o, hash, tmpl, created)
}

// newReplicaSetObject is the row of a ReplicaSet of d (row o) with the pod
// template tmpl, whose pods carry the pod-template-hash label hash.
func newReplicaSetObject(d *appsv1.Deployment, o *store.Object, hash string, tmpl corev1.PodTemplateSpec, created time.Time) *store.Object {
	zero := int32(0)
	rs := &appsv1.ReplicaSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace,
			Labels:            withLabel(d.Spec.Template.Labels, podTemplateHashLabel, hash),
			Annotations:       map[string]string{},
			CreationTimestamp: metav1.NewTime(created),
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptrTrue()}},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: &zero, Template: tmpl},
	}
	sel := d.Spec.Selector.DeepCopy()
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	sel.MatchLabels = withLabel(sel.MatchLabels, podTemplateHashLabel, hash)
	rs.Spec.Selector = sel
	return &store.Object{
		Key: "ReplicaSet/" + d.Namespace + "/" + rs.Name, APIVersion: "apps/v1", Kind: "ReplicaSet",
		Namespace: d.Namespace, Name: rs.Name, Labels: rs.Labels, OwnerKey: o.Key, Obj: rs,
		File: o.File, Line: o.Line, Hash: hash, Revision: o.Revision,
	}
}

func withLabel(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

func ptrTrue() *bool { t := true; return &t }

// sortForDeletion orders pods as Kubernetes' ReplicaSet controller deletes
// them when scaling down: unscheduled before scheduled; Pending, then
// Unknown, then Running; not ready before ready; ready for less time before
// ready for longer (so a pod not yet available for minReadySeconds goes
// before an available one); more container restarts first; newest first.
func sortForDeletion(ps []*store.Pod) {
	phase := func(p *store.Pod) int {
		switch corev1.PodPhase(p.Phase) {
		case corev1.PodUnknown:
			return 1
		case corev1.PodRunning:
			return 2
		}
		return 0
	}
	// earlier reports whether a goes first by time: a zero time first, then
	// the later one.
	earlier := func(a, b time.Time) bool {
		if a.IsZero() || b.IsZero() {
			return a.IsZero() && !b.IsZero()
		}
		return a.After(b)
	}
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if (a.NodeName == "") != (b.NodeName == "") {
			return a.NodeName == ""
		}
		if pa, pb := phase(a), phase(b); pa != pb {
			return pa < pb
		}
		if a.Ready != b.Ready {
			return !a.Ready
		}
		if a.Ready && a.ReadySince != b.ReadySince {
			return earlier(a.ReadySince.Time(), b.ReadySince.Time())
		}
		if a.Restarts != b.Restarts {
			return a.Restarts > b.Restarts
		}
		return a.Created != b.Created && earlier(a.Created.Time(), b.Created.Time())
	})
}

// schedule binds the pending pods of this pass in one batch. The scheduler
// reads a pod's namespace, owner and spec: the rows' bases, which the pods
// of one template share; its placements come in the order of the pods.
func schedule(plan *clusterPlan, pods []*store.Pod, nodes []*store.Node, deleted map[string]bool, now time.Time) {
	var pending []*store.Pod
	for _, p := range plan.upsertPods {
		if p.NodeName == "" {
			pending = append(pending, p)
		}
	}
	for _, p := range pods {
		if p.NodeName == "" && !deleted[p.Key] {
			pending = append(pending, p)
		}
	}
	if len(pending) == 0 {
		return
	}
	bound := map[string][]*corev1.Pod{}
	for _, p := range pods {
		if p.NodeName != "" {
			// Pods on their way out still hold their resources and ports
			// until their node has stopped them.
			bound[p.NodeName] = append(bound[p.NodeName], p.Base)
		}
	}
	var sn []*scheduler.Node
	for _, n := range nodes {
		sn = append(sn, scheduler.NewNode(n.Node, bound[n.Name]))
	}
	upserted := map[*store.Pod]bool{}
	for _, p := range plan.upsertPods {
		upserted[p] = true
	}
	bases := make([]*corev1.Pod, len(pending))
	for i, p := range pending {
		bases[i] = p.Base
	}
	for i, pl := range scheduler.NewSnapshot(sn).Schedule(bases, scheduler.Options{}) {
		row := pending[i]
		st := row.Status()
		msg := pl.Reason
		cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now)}
		if pl.Node == "" {
			cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, corev1.PodReasonUnschedulable, msg
			if old := scheduledCondition(&st); old != nil && old.Message == msg {
				continue // already said
			}
		}
		p := *row // only the node and the conditions change
		st.Conditions = []corev1.PodCondition{cond}
		p.SetStatus(&st)
		p.NodeName = pl.Node
		if upserted[row] {
			*row = p
		} else {
			plan.upsertPods = append(plan.upsertPods, &p)
		}
		if pl.Node != "" {
			plan.events = append(plan.events, &store.Event{ObjectKey: "Pod/" + p.Key, Type: corev1.EventTypeNormal, Reason: "Scheduled", Message: "assigned " + p.Key + " to " + pl.Node})
		} else {
			plan.events = append(plan.events, &store.Event{ObjectKey: "Pod/" + p.Key, Type: corev1.EventTypeWarning, Reason: "FailedScheduling", Message: msg})
		}
	}
}

func scheduledCondition(s *corev1.PodStatus) *corev1.PodCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == corev1.PodScheduled {
			return &s.Conditions[i]
		}
	}
	return nil
}

// staysOnItsNode tells the pods that eviction leaves on a node that is
// gone, because they would only be made again on the same node: a
// DaemonSet's (Kubernetes gives them tolerations of not-ready and
// unreachable nodes) and a pod whose manifest names its node.
func staysOnItsNode(p *store.Pod) bool {
	return strings.HasPrefix(p.OwnerKey, "DaemonSet/") || (p.Base != nil && p.Base.Spec.NodeName != "")
}
