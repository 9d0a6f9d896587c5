package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// BenchmarkPass is one pass of the controllers over the cluster of
// BenchmarkControllerScale, in process: 5,000 nodes and 1,000 Deployments
// of 100 replicas, every pod bound and reported Running (an IP, Ready, one
// container status), nothing left to change. It reports the pass time
// (ms/pass: every change to pods, nodes or objects costs one) and the live
// heap holding that cluster (heap-MB, and per pod: heap-B/pod), which
// cmd/keelson's benchmark measures on the whole process.
func BenchmarkPass(b *testing.B) {
	// The cluster takes a while to build: once, for every b.N.
	scale.once.Do(func() { scale.c, scale.heap, scale.pods = scaleCluster(b) })
	if scale.c == nil {
		b.Fatal("no cluster")
	}
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		if err := scale.c.reconcileOnce(memdb.NewWatchSet()); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time (the pass's and its garbage collection's) is what a shared
	// machine does not stretch.
	b.ReportMetric(float64((cpuTime()-cpu).Milliseconds())/float64(b.N), "cpu-ms/pass")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/pass")
	b.ReportMetric(float64(scale.heap)/(1<<20), "heap-MB")
	b.ReportMetric(float64(scale.heap)/float64(scale.pods), "heap-B/pod")
	b.ReportMetric(0, "ns/op")
}

var scale struct {
	once sync.Once
	c    *Cluster
	heap uint64
	pods int
}

// scaleCluster builds BenchmarkPass's cluster and returns it with the heap
// it holds and its number of pods.
func scaleCluster(b *testing.B) (*Cluster, uint64, int) {
	const nodes, deployments, replicas = 5000, 1000, 100
	st, err := store.New()
	if err != nil {
		b.Fatal(err)
	}
	before := liveHeap()
	a := NewApplier(st, manifest.NewLoader(manifest.Options{}), nil, slog.New(slog.DiscardHandler), nil)
	files := map[string]string{"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: scale\n"}
	for i := range deployments {
		files[fmt.Sprintf("apps/d%04d.yaml", i)] = fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: d%04d, namespace: scale}
spec:
  replicas: %d
  selector: {matchLabels: {app: d%04d}}
  template:
    metadata: {labels: {app: d%04d}}
    spec:
      containers:
      - name: c
        image: registry.local/app:v1
        resources: {requests: {cpu: 100m, memory: 128Mi}}
`, i, replicas, i, i)
	}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := NewCluster(st, ClusterConfig{Now: clk.now, ClusterCIDR: "10.0.0.0/8"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := a.Apply(revision("c1", files), clk.t); err != nil {
		b.Fatal(err)
	}
	clk.t = clk.t.Add(c.cfg.StartupGrace)
	hostIP := map[string]string{}
	for i := range nodes {
		name, ip := fmt.Sprintf("sim-%05d", i), fmt.Sprintf("10.1.%d.%d", i/250, i%250)
		hostIP[name] = ip
		alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"), corev1.ResourcePods: resource.MustParse("250")}
		if _, err := c.Register(context.Background(), &api.NodeRegistration{Node: corev1.Node{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
			Status: corev1.NodeStatus{Capacity: alloc, Allocatable: alloc.DeepCopy(),
				Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}},
				NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "keelson", ContainerRuntimeVersion: "containerd", OperatingSystem: "linux", Architecture: "amd64"}},
		}}); err != nil {
			b.Fatal(err)
		}
	}
	pass := func() {
		if err := c.reconcileOnce(memdb.NewWatchSet()); err != nil {
			b.Fatal(err)
		}
	}
	for range 5 {
		pass()
	}
	pods, err := st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
	if err != nil {
		b.Fatal(err)
	}
	if len(pods) != deployments*replicas {
		b.Fatalf("%d pods, want %d", len(pods), deployments*replicas)
	}
	onNode := map[string]int{}
	for _, p := range pods {
		if p.NodeName == "" {
			b.Fatalf("pod %s not bound", p.Key)
		}
		// As the --simulate agent reports a pod, with its own IP.
		r := runningReport(p.Object(), fmt.Sprintf("10.%d.%d", len(onNode)%250, onNode[p.NodeName]+2), hostIP[p.NodeName])
		onNode[p.NodeName]++
		if err := c.ReportPod(context.Background(), p.NodeName, r); err != nil {
			b.Fatal(err)
		}
	}
	for range 3 {
		pass()
	}
	pods = nil
	return c, liveHeap() - before, deployments * replicas
}

// runningReport is p as the --simulate agent reports it: Running with an
// IP, Ready, and one running container status per container.
func runningReport(p *corev1.Pod, podIP, hostIP string) *corev1.Pod {
	r := p.DeepCopy()
	now := metav1.Now()
	r.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &now, HostIP: hostIP, PodIP: podIP,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue}}}
	for _, ct := range p.Spec.Containers {
		r.Status.ContainerStatuses = append(r.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ct.Name, Image: ct.Image, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
	}
	return r
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
