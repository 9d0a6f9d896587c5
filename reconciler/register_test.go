package reconciler

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/store"
)

// TestPodCIDRs: each node gets the first /24 of the cluster CIDR no other
// node has (a gap a removed node left comes first), keeps its own when it
// registers again, and registering fails once every /24 is given.
func TestPodCIDRs(t *testing.T) {
	st, err := store.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(st, ClusterConfig{ClusterCIDR: "10.8.4.0/22"})
	if err != nil {
		t.Fatal(err)
	}
	reg := func(name string) (string, error) {
		n, err := c.Register(context.Background(), &api.NodeRegistration{Node: corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}})
		if err != nil {
			return "", err
		}
		return n.Spec.PodCIDR, nil
	}
	var got []string
	for _, name := range []string{"a", "b", "c", "b"} {
		cidr, err := reg(name)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, cidr)
	}
	if diff := cmp.Diff([]string{"10.8.4.0/24", "10.8.5.0/24", "10.8.6.0/24", "10.8.5.0/24"}, got); diff != "" {
		t.Errorf("pod CIDRs (-want +got):\n%s", diff)
	}
	txn := st.Write()
	if err := txn.DeleteNode("b"); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, want string }{{"d", "10.8.5.0/24"}, {"e", "10.8.7.0/24"}} {
		if cidr, err := reg(tc.name); err != nil || cidr != tc.want {
			t.Errorf("node %s: %s, %v; want %s", tc.name, cidr, err, tc.want)
		}
	}
	if cidr, err := reg("f"); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Errorf("a fifth node in a /22: %s, %v; want exhausted", cidr, err)
	}
}

// TestNodeResourcesShared: nodes registered with the same capacity share
// one resource list, and each is served as it registered.
func TestNodeResourcesShared(t *testing.T) {
	st, err := store.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(st, ClusterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	list := func(cpu, mem string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
	for _, n := range []struct{ name, cpu, mem string }{{"a", "32", "128Gi"}, {"b", "32", "128Gi"}, {"c", "16", "128Gi"}} {
		if _, err := c.Register(context.Background(), &api.NodeRegistration{Node: corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name},
			Status: corev1.NodeStatus{Capacity: list(n.cpu, n.mem), Allocatable: list(n.cpu, n.mem)}}}); err != nil {
			t.Fatal(err)
		}
	}
	nodes, err := st.Snapshot().Nodes(memdb.NewWatchSet())
	if err != nil {
		t.Fatal(err)
	}
	same := func(x, y corev1.ResourceList) bool {
		return reflect.ValueOf(x).Pointer() == reflect.ValueOf(y).Pointer()
	}
	a, b, cc := nodes[0].Node.Status, nodes[1].Node.Status, nodes[2].Node.Status
	if !same(a.Capacity, b.Capacity) || !same(a.Capacity, a.Allocatable) || same(a.Capacity, cc.Capacity) {
		t.Errorf("shared: a and b %v, a's capacity and allocatable %v, a and c %v; want true, true, false",
			same(a.Capacity, b.Capacity), same(a.Capacity, a.Allocatable), same(a.Capacity, cc.Capacity))
	}
	for i, want := range []corev1.ResourceList{list("32", "128Gi"), list("32", "128Gi"), list("16", "128Gi")} {
		if got := nodes[i].Node.Status.Allocatable; !equality.Semantic.DeepEqual(got, want) || got.Cpu().String() != want.Cpu().String() {
			t.Errorf("node %s allocatable %v, want %v", nodes[i].Name, got, want)
		}
	}
}

// TestAdoptedPodsShareBases: the pods of one ReplicaSet that a restarted
// controller adopts from its nodes' reports share one base, as those it
// makes do, and each is served as its node reported it; a pod of another
// template has its own.
func TestAdoptedPodsShareBases(t *testing.T) {
	st, err := store.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(st, ClusterConfig{StartupGrace: time.Hour}) // not warm: it adopts
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	pod := func(name, node, image string) *corev1.Pod {
		return &corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"},
				CreationTimestamp: metav1.NewTime(time.Date(2026, 3, 1, 10, 0, len(name), 0, time.UTC)),
				OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", Controller: &yes}}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: image}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0." + fmt.Sprint(len(name)),
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))}}},
		}
	}
	reported := []*corev1.Pod{pod("web-1-a", "n1", "web:v1"), pod("web-1-bb", "n2", "web:v1"), pod("web-1-ccc", "n1", "web:v2")}
	for _, p := range reported {
		if err := c.ReportPod(context.Background(), p.Spec.NodeName, p.DeepCopy()); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d pods adopted, want 3", len(rows))
	}
	if rows[0].Base != rows[1].Base || rows[0].Base == rows[2].Base {
		t.Errorf("bases shared: a and b %v, a and c %v; want true, false", rows[0].Base == rows[1].Base, rows[0].Base == rows[2].Base)
	}
	for i, row := range rows {
		want, got := reported[i].DeepCopy(), row.Object()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pod %s served (-reported +served):\n%s", row.Key, diff)
		}
	}
	// Another node reporting a pod bound to n1 is refused, and the pod
	// keeps the status its own node gave it.
	stray := pod("web-1-a", "n2", "web:v1")
	stray.Status.PodIP = "10.9.9.9"
	if err := c.ReportPod(context.Background(), "n2", stray); err == nil || !strings.Contains(err.Error(), `bound to node "n1"`) {
		t.Errorf("n2 reporting n1's pod: %v, want refused", err)
	}
	if p, err := st.Snapshot().Pod(memdb.NewWatchSet(), "default/web-1-a"); err != nil || p.Object().Status.PodIP != "10.0.0.7" || p.NodeName != "n1" {
		t.Errorf("after n2's report: %v on %s (%v), want 10.0.0.7 on n1", p.Object().Status.PodIP, p.NodeName, err)
	}
}
