package scheduler

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func resources(cpu, memory string, pods int64) corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(memory),
		corev1.ResourcePods:   *resource.NewQuantity(pods, resource.DecimalSI),
	}
}

type nodeOpt func(*corev1.Node)

func node(name, cpu, mem string, opts ...nodeOpt) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{
			Allocatable: resources(cpu, mem, 110),
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func labeled(k, v string) nodeOpt { return func(n *corev1.Node) { n.Labels[k] = v } }
func tainted(k, v string) nodeOpt {
	return func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffectNoSchedule})
	}
}
func notReadyNode(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }
func cordoned(n *corev1.Node)     { n.Spec.Unschedulable = true }

type podOpt func(*corev1.Pod)

func pod(name, cpu, mem string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}}}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func selectNode(k, v string) podOpt {
	return func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{k: v} }
}
func tolerate(k string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: k, Operator: corev1.TolerationOpExists})
	}
}
func hostPortOpt(port int32) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: port}}
	}
}
func owned(name string) podOpt {
	t := true
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: name, Controller: &t}}
	}
}
func preferLabel(k, v string, w int32) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: w,
				Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: k, Operator: corev1.NodeSelectorOpIn, Values: []string{v}}}}}}}}
	}
}
func requireLabelIn(k string, vs ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: k, Operator: corev1.NodeSelectorOpIn, Values: vs}}}}}}}
	}
}

func TestSchedule(t *testing.T) {
	tests := []struct {
		name     string
		nodes    []*corev1.Node
		bound    map[string][]*corev1.Pod
		pods     []*corev1.Pod
		strategy Strategy
		want     []string // node per pod, or the reason
	}{
		{
			name:  "bin-packing fills the fuller node first",
			nodes: []*corev1.Node{node("a", "4", "8Gi"), node("b", "4", "8Gi")},
			bound: map[string][]*corev1.Pod{"b": {pod("x", "2", "4Gi")}},
			pods:  []*corev1.Pod{pod("p", "1", "1Gi")},
			want:  []string{"b"},
		},
		{
			name:     "spread strategy prefers the emptier node",
			nodes:    []*corev1.Node{node("a", "4", "8Gi"), node("b", "4", "8Gi")},
			bound:    map[string][]*corev1.Pod{"b": {pod("x", "2", "4Gi")}},
			pods:     []*corev1.Pod{pod("p", "1", "1Gi")},
			strategy: Spread,
			want:     []string{"a"},
		},
		{
			name:  "a batch never overcommits a node",
			nodes: []*corev1.Node{node("a", "2", "4Gi"), node("b", "2", "4Gi")},
			pods:  []*corev1.Pod{pod("p1", "1500m", "1Gi"), pod("p2", "1500m", "1Gi"), pod("p3", "1500m", "1Gi")},
			want:  []string{"a", "b", "0/2 nodes available: 2 insufficient cpu"},
		},
		{
			name:  "replicas of one owner spread over nodes",
			nodes: []*corev1.Node{node("a", "8", "16Gi"), node("b", "8", "16Gi"), node("c", "8", "16Gi")},
			pods:  []*corev1.Pod{pod("r1", "100m", "100Mi", owned("web")), pod("r2", "100m", "100Mi", owned("web")), pod("r3", "100m", "100Mi", owned("web"))},
			want:  []string{"a", "b", "c"},
		},
		{
			name:  "the reason names every filter that failed",
			nodes: []*corev1.Node{node("a", "1", "1Gi"), node("b", "8", "512Mi"), node("c", "8", "16Gi", labeled("disk", "hdd"))},
			pods:  []*corev1.Pod{pod("p", "500m", "1Gi", selectNode("disk", "ssd"))},
			want:  []string{"0/3 nodes available: 1 insufficient memory, 2 node(s) didn't match node selector"},
		},
		{
			name:  "node selector",
			nodes: []*corev1.Node{node("a", "8", "16Gi"), node("b", "8", "16Gi", labeled("disk", "ssd"))},
			pods:  []*corev1.Pod{pod("p", "1", "1Gi", selectNode("disk", "ssd"))},
			want:  []string{"b"},
		},
		{
			name:  "required node affinity",
			nodes: []*corev1.Node{node("a", "8", "16Gi", labeled("zone", "x")), node("b", "8", "16Gi", labeled("zone", "y")), node("c", "8", "16Gi")},
			pods:  []*corev1.Pod{pod("p", "1", "1Gi", requireLabelIn("zone", "y", "z"))},
			want:  []string{"b"},
		},
		{
			name:  "preferred node affinity outweighs bin-packing",
			nodes: []*corev1.Node{node("a", "4", "8Gi"), node("b", "4", "8Gi", labeled("gpu", "yes"))},
			bound: map[string][]*corev1.Pod{"a": {pod("x", "2", "4Gi")}},
			pods:  []*corev1.Pod{pod("p", "1", "1Gi", preferLabel("gpu", "yes", 100))},
			want:  []string{"b"},
		},
		{
			name:  "taints keep pods off unless tolerated",
			nodes: []*corev1.Node{node("a", "8", "16Gi", tainted("dedicated", "db"))},
			pods:  []*corev1.Pod{pod("p", "1", "1Gi"), pod("q", "1", "1Gi", tolerate("dedicated"))},
			want:  []string{"0/1 nodes available: 1 node(s) had untolerated taints", "a"},
		},
		{
			name:  "not ready and cordoned nodes are skipped",
			nodes: []*corev1.Node{node("a", "8", "16Gi", notReadyNode), node("b", "8", "16Gi", cordoned), node("c", "8", "16Gi")},
			pods:  []*corev1.Pod{pod("p", "1", "1Gi"), pod("q", "100", "1Gi")},
			want:  []string{"c", "0/3 nodes available: 1 node(s) were not ready, 1 node(s) were unschedulable, 1 insufficient cpu"},
		},
		{
			name:  "host ports conflict",
			nodes: []*corev1.Node{node("a", "8", "16Gi"), node("b", "8", "16Gi")},
			pods:  []*corev1.Pod{pod("p", "1", "1Gi", hostPortOpt(80)), pod("q", "1", "1Gi", hostPortOpt(80)), pod("r", "1", "1Gi", hostPortOpt(80))},
			want:  []string{"a", "b", "0/2 nodes available: 2 node(s) didn't have free ports for the requested pod ports"},
		},
		{
			name:  "spec.nodeName is honoured and checked",
			nodes: []*corev1.Node{node("a", "8", "16Gi"), node("b", "1", "1Gi")},
			pods: []*corev1.Pod{
				pod("p", "1", "1Gi", func(p *corev1.Pod) { p.Spec.NodeName = "a" }),
				pod("q", "2", "1Gi", func(p *corev1.Pod) { p.Spec.NodeName = "b" }),
			},
			want: []string{"a", "0/2 nodes available: 1 node(s) didn't match the requested node name, 1 insufficient cpu"},
		},
		{
			name: "no nodes",
			pods: []*corev1.Pod{pod("p", "1", "1Gi")},
			want: []string{"0/0 nodes available: no node has joined the cluster"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var nodes []*Node
			for _, n := range tt.nodes {
				nodes = append(nodes, NewNode(n, tt.bound[n.Name]))
			}
			got := NewSnapshot(nodes).Schedule(tt.pods, Options{Strategy: tt.strategy})
			var names []string
			for _, pl := range got {
				if pl.Node != "" {
					names = append(names, pl.Node)
				} else {
					names = append(names, pl.Reason)
				}
			}
			if diff := cmp.Diff(tt.want, names); diff != "" {
				t.Errorf("placements (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFeasibleToFind(t *testing.T) {
	for _, tt := range []struct{ nodes, want int }{{3, 3}, {100, 100}, {1000, 420}, {5000, 500}, {20000, 1000}} {
		if got := feasibleToFind(tt.nodes, 0); got != tt.want {
			t.Errorf("feasibleToFind(%d) = %d, want %d", tt.nodes, got, tt.want)
		}
	}
}

// simulated builds n nodes of 32 cores and 128 GiB, and pods of 100m/256Mi
// in ReplicaSets of 10, as a benchmark's cluster.
func simulated(nodes, pods int) ([]*Node, []*corev1.Pod) {
	ns := make([]*Node, nodes)
	for i := range ns {
		ns[i] = NewNode(node(fmt.Sprintf("node-%05d", i), "32", "128Gi", func(n *corev1.Node) {
			n.Status.Allocatable[corev1.ResourcePods] = *resource.NewQuantity(250, resource.DecimalSI)
		}), nil)
	}
	ps := make([]*corev1.Pod, pods)
	for i := range ps {
		ps[i] = pod(fmt.Sprintf("pod-%06d", i), "100m", "256Mi", owned(fmt.Sprintf("rs-%d", i/10)))
	}
	return ns, ps
}

// BenchmarkSchedule binds 100,000 pods onto 5,000 nodes (target ≥ 10,000
// pods/s) and 10,000 pods onto 1,000 nodes, in one pass each.
func BenchmarkSchedule(b *testing.B) {
	for _, c := range []struct{ nodes, pods int }{{5000, 100000}, {1000, 10000}} {
		b.Run(fmt.Sprintf("%dpods-%dnodes", c.pods, c.nodes), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				nodes, pods := simulated(c.nodes, c.pods)
				snap := NewSnapshot(nodes)
				b.StartTimer()
				out := snap.Schedule(pods, Options{})
				b.StopTimer()
				for _, pl := range out {
					if pl.Node == "" {
						b.Fatalf("pod %s unschedulable: %s", pl.Pod.Name, pl.Reason)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(c.pods)*float64(b.N)/b.Elapsed().Seconds(), "pods/s")
		})
	}
}
