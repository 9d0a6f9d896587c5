// Package scheduler binds pods to nodes. It is pure: Schedule reads a
// snapshot of the nodes (and what is already bound to them), places a
// batch of pods in one pass, and returns the placements; it starts no
// goroutine and keeps no state beyond the Snapshot it is given, which it
// updates as it places pods so that one batch never overcommits a node.
//
// Placement is filter, then score, as kube-scheduler does. Filters: the
// node is Ready and schedulable, the pod's requests fit the node's
// allocatable minus what is bound, nodeSelector and required node affinity,
// taints and tolerations, spec.nodeName, host ports. Scores: bin-packing
// (most allocated, the default) or least allocated, spread of one owner's
// replicas, and preferred node affinity. Like kube-scheduler, it scores a
// sample of the feasible nodes (all of them on small clusters), starting
// each pod's search where the previous one stopped.
package scheduler

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	v1helper "k8s.io/component-helpers/scheduling/corev1"
)

// Strategy chooses among feasible nodes.
type Strategy int

const (
	// BinPack prefers the most allocated nodes, keeping others free.
	BinPack Strategy = iota
	// Spread prefers the least allocated nodes.
	Spread
)

// Options tune Schedule.
type Options struct {
	Strategy Strategy
	// MinFeasible is the least number of feasible nodes scored per pod
	// (default 100); on large clusters a share of the nodes is scored,
	// as kube-scheduler's percentageOfNodesToScore.
	MinFeasible int
}

// Placement is where a pod goes, or why it cannot go anywhere.
type Placement struct {
	Pod  *corev1.Pod
	Node string // "" when unschedulable
	// Reason, when Node is "", is what users read: "0/3 nodes available:
	// 2 insufficient memory, 1 node(s) didn't match node selector".
	Reason string
}

type hostPort struct {
	ip    string
	proto corev1.Protocol
	port  int32
}

// Node is the scheduler's view of a node. Create it with NewNode.
type Node struct {
	Node        *corev1.Node
	name        string
	ready       bool
	schedulable bool
	allocCPU    int64 // millicores
	allocMem    int64 // bytes
	allocPods   int64
	reqCPU      int64
	reqMem      int64
	pods        int64
	ports       map[hostPort]struct{}
	owners      map[string]int32
}

// Name is the node's name.
func (n *Node) Name() string { return n.name }

// NewNode builds the view of a node with the pods already bound to it.
func NewNode(node *corev1.Node, bound []*corev1.Pod) *Node {
	n := &Node{Node: node, name: node.Name, schedulable: !node.Spec.Unschedulable}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			n.ready = true
		}
	}
	alloc := node.Status.Allocatable
	if alloc == nil {
		alloc = node.Status.Capacity
	}
	n.allocCPU = alloc.Cpu().MilliValue()
	n.allocMem = alloc.Memory().Value()
	n.allocPods = alloc.Pods().Value()
	if _, ok := alloc[corev1.ResourcePods]; !ok {
		n.allocPods = 110
	}
	for _, p := range bound {
		n.add(newRequest(p))
	}
	return n
}

func (n *Node) add(r *request) {
	n.reqCPU += r.cpu
	n.reqMem += r.mem
	n.pods++
	for _, hp := range r.ports {
		if n.ports == nil {
			n.ports = map[hostPort]struct{}{}
		}
		n.ports[hp] = struct{}{}
	}
	if r.owner != "" {
		if n.owners == nil {
			n.owners = map[string]int32{}
		}
		n.owners[r.owner]++
	}
}

// request is what a pod asks of a node, computed once per pod.
type request struct {
	pod       *corev1.Pod
	cpu, mem  int64
	ports     []hostPort
	owner     string
	affinity  nodeaffinity.RequiredNodeAffinity
	preferred *nodeaffinity.PreferredSchedulingTerms
	hasAff    bool
}

// Kubernetes' defaults for a container that requests nothing, used for
// scoring only (as kube-scheduler's non-zero requests).
const (
	defaultMilliCPU = 100
	defaultMemory   = 200 << 20
)

func newRequest(p *corev1.Pod) *request {
	r := &request{pod: p}
	sum := func(cs []corev1.Container) (cpu, mem int64) {
		for _, c := range cs {
			cpu += quantity(c.Resources.Requests, c.Resources.Limits, corev1.ResourceCPU, true)
			mem += quantity(c.Resources.Requests, c.Resources.Limits, corev1.ResourceMemory, false)
		}
		return
	}
	r.cpu, r.mem = sum(p.Spec.Containers)
	for _, c := range p.Spec.InitContainers {
		ic, im := sum([]corev1.Container{c})
		r.cpu, r.mem = max(r.cpu, ic), max(r.mem, im)
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.HostPort > 0 {
				proto := cp.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				r.ports = append(r.ports, hostPort{ip: cp.HostIP, proto: proto, port: cp.HostPort})
			}
		}
	}
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			r.owner = o.Kind + "/" + p.Namespace + "/" + o.Name
		}
	}
	if len(p.Spec.NodeSelector) > 0 || (p.Spec.Affinity != nil && p.Spec.Affinity.NodeAffinity != nil) {
		r.hasAff = true
		r.affinity = nodeaffinity.GetRequiredNodeAffinity(p)
		if na := p.Spec.Affinity; na != nil && na.NodeAffinity != nil && len(na.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
			r.preferred, _ = nodeaffinity.NewPreferredSchedulingTerms(na.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		}
	}
	return r
}

func quantity(req, lim corev1.ResourceList, name corev1.ResourceName, milli bool) int64 {
	q, ok := req[name]
	if !ok {
		q, ok = lim[name] // a limit alone is also the request, as the API server defaults it
	}
	if !ok {
		return 0
	}
	if milli {
		return q.MilliValue()
	}
	return q.Value()
}

// why a node was filtered out, in the words users read.
type reason int

const (
	fits reason = iota
	notReady
	unschedulable
	wrongName
	insufficientCPU
	insufficientMemory
	tooManyPods
	portsTaken
	taint
	selector
	numReasons
)

var reasonText = [numReasons]string{
	notReady:           "node(s) were not ready",
	unschedulable:      "node(s) were unschedulable",
	wrongName:          "node(s) didn't match the requested node name",
	insufficientCPU:    "insufficient cpu",
	insufficientMemory: "insufficient memory",
	tooManyPods:        "too many pods",
	portsTaken:         "node(s) didn't have free ports for the requested pod ports",
	taint:              "node(s) had untolerated taints",
	selector:           "node(s) didn't match node selector",
}

var discard = klog.Background()

// filter reports whether r fits on n, and why not.
func filter(n *Node, r *request) reason {
	p := r.pod
	if p.Spec.NodeName != "" && p.Spec.NodeName != n.name {
		return wrongName
	}
	if !n.ready {
		return notReady
	}
	if !n.schedulable {
		return unschedulable
	}
	if n.reqCPU+r.cpu > n.allocCPU && r.cpu > 0 {
		return insufficientCPU
	}
	if n.reqMem+r.mem > n.allocMem && r.mem > 0 {
		return insufficientMemory
	}
	if n.pods+1 > n.allocPods {
		return tooManyPods
	}
	for _, hp := range r.ports {
		if n.portTaken(hp) {
			return portsTaken
		}
	}
	if len(n.Node.Spec.Taints) > 0 {
		_, untolerated := v1helper.FindMatchingUntoleratedTaint(discard, n.Node.Spec.Taints, p.Spec.Tolerations, func(t *corev1.Taint) bool {
			return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
		}, false)
		if untolerated {
			return taint
		}
	}
	if r.hasAff {
		if ok, _ := r.affinity.Match(n.Node); !ok {
			return selector
		}
	}
	return fits
}

func (n *Node) portTaken(hp hostPort) bool {
	if len(n.ports) == 0 {
		return false
	}
	for used := range n.ports {
		if used.port == hp.port && used.proto == hp.proto &&
			(used.ip == hp.ip || used.ip == "" || hp.ip == "" || used.ip == "0.0.0.0" || hp.ip == "0.0.0.0") {
			return true
		}
	}
	return false
}

// score ranks a feasible node for r; higher is better.
func score(n *Node, r *request, s Strategy) int64 {
	cpu, mem := max(r.cpu, defaultMilliCPU), max(r.mem, defaultMemory)
	var fill int64
	if n.allocCPU > 0 {
		fill += (n.reqCPU + cpu) * 50 / n.allocCPU
	}
	if n.allocMem > 0 {
		fill += (n.reqMem + mem) * 50 / n.allocMem
	}
	fill = min(fill, 100)
	sc := fill
	if s == Spread {
		sc = 100 - fill
	}
	if r.owner != "" {
		// Replicas of one owner spread out: each one already on the node
		// costs more than bin-packing can gain.
		sc -= int64(n.owners[r.owner]) * 20
	}
	if r.preferred != nil {
		sc += r.preferred.Score(n.Node)
	}
	return sc
}

// Snapshot is the nodes one scheduling pass works on. Not safe for
// concurrent use.
type Snapshot struct {
	nodes []*Node
	next  int
}

// NewSnapshot holds nodes for Schedule, in a stable order.
func NewSnapshot(nodes []*Node) *Snapshot {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].name < nodes[j].name })
	return &Snapshot{nodes: nodes}
}

// feasibleToFind is how many feasible nodes a pod's search scores.
func feasibleToFind(n, minFeasible int) int {
	if minFeasible <= 0 {
		minFeasible = 100
	}
	if n <= minFeasible {
		return n
	}
	pct := max(50-n/125, 5)
	return max(n*pct/100, minFeasible)
}

// Schedule places pods, in order, and returns one Placement per pod.
// Pods already bound (spec.nodeName set and present in the snapshot) are
// accounted but not moved.
func (s *Snapshot) Schedule(pods []*corev1.Pod, o Options) []Placement {
	out := make([]Placement, len(pods))
	n := len(s.nodes)
	want := feasibleToFind(n, o.MinFeasible)
	var counts [numReasons]int
	for i, p := range pods {
		out[i].Pod = p
		if n == 0 {
			out[i].Reason = "0/0 nodes available: no node has joined the cluster"
			continue
		}
		r := newRequest(p)
		var best *Node
		var bestScore int64
		found := 0
		start := s.next
		examined := 0
		for ; examined < n && found < want; examined++ {
			nd := s.nodes[(start+examined)%n]
			if filter(nd, r) != fits {
				continue
			}
			found++
			if sc := score(nd, r, o.Strategy); best == nil || sc > bestScore {
				best, bestScore = nd, sc
			}
		}
		s.next = (start + examined) % n
		if best != nil {
			best.add(r)
			out[i].Node = best.name
			continue
		}
		// Nothing fits: count why, over every node, for a reason users can act on.
		counts = [numReasons]int{}
		for _, nd := range s.nodes {
			counts[filter(nd, r)]++
		}
		out[i].Reason = unschedulableReason(n, counts)
	}
	return out
}

func unschedulableReason(n int, counts [numReasons]int) string {
	var parts []string
	for r := reason(1); r < numReasons; r++ {
		if c := counts[r]; c > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c, reasonText[r]))
		}
	}
	return fmt.Sprintf("0/%d nodes available: %s", n, strings.Join(parts, ", "))
}
