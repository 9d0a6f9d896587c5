package store

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkPodMemory is what a pod costs the store at 100,000 pods (1,000
// templates of 100, 250 a node as the scheduler packs them), part by part,
// measured as the live heap grows: the row itself (row-B/pod); the strings
// only it holds, key and UID in one and its IP (strings-B/pod); its status
// as the --simulate agent reports it, encoded (status-B/pod); the pods'
// bases, shared by 100 (bases-B/pod); and the go-memdb table with its id
// index and the node lists (table-B/pod).
func BenchmarkPodMemory(b *testing.B) {
	const pods, perTemplate, perNode = 100000, 100, 250
	for range b.N {
		var parts [5]float64
		heap := liveHeapBytes()
		step := func(i int) {
			h := liveHeapBytes()
			parts[i] = float64(h-heap) / pods
			heap = h
		}
		rows := make([]*Pod, pods)
		step(4) // the slice: measured apart, reported nowhere
		for i := range rows {
			rows[i] = &Pod{Namespace: "scale", Phase: "Running"}
		}
		step(0)
		nodes := make([]string, pods/perNode) // the controller's node names, shared
		for i := range nodes {
			nodes[i] = fmt.Sprintf("sim-%05d", i)
		}
		heap = liveHeapBytes()
		for i, p := range rows {
			kn := fmt.Sprintf("scale/d%04d-6d4f8b9c7d-%05x", i/perTemplate, i) + "0b5e2a8c-1f7e-4a5e-9b51-6f1c0e4b" + fmt.Sprintf("%04x", i%0x10000)
			p.Key, p.UID = kn[:len(kn)-36], types.UID(kn[len(kn)-36:])
			p.Name = p.Key[len("scale/"):]
			p.NodeName = nodes[i/perNode]
			p.PodIP = fmt.Sprintf("10.%d.%d.%d", i/perNode/256, i/perNode%256, i%perNode+2)
		}
		step(1)
		// As podBase makes them: a pod struct each, sharing its template's
		// maps and slices.
		tmpl := simulatedPod()
		var bases []*corev1.Pod
		for i, p := range rows {
			if i%perTemplate == 0 {
				base := *tmpl
				bases = append(bases, &base)
			}
			p.Base = bases[len(bases)-1]
		}
		step(2)
		now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		for i, p := range rows {
			t := metav1.NewTime(now.Add(time.Duration(i) * time.Millisecond))
			s := simulatedPod().Status
			s.PodIP, s.StartTime = p.PodIP, &t
			for j := range s.Conditions {
				s.Conditions[j].LastTransitionTime = t
			}
			s.ContainerStatuses[0].State.Running.StartedAt = t
			p.SetStatus(&s)
		}
		step(3)
		st, err := New()
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < pods; i += 1000 {
			txn := st.Write()
			for _, p := range rows[i : i+1000] {
				if err := txn.UpsertPod(p); err != nil {
					b.Fatal(err)
				}
			}
			if err := txn.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		step(4)
		b.ReportMetric(parts[0], "row-B/pod")
		b.ReportMetric(parts[1], "strings-B/pod")
		b.ReportMetric(parts[2], "bases-B/pod")
		b.ReportMetric(parts[3], "status-B/pod")
		b.ReportMetric(parts[4], "table-B/pod")
		b.ReportMetric(parts[0]+parts[1]+parts[2]+parts[3]+parts[4], "total-B/pod")
		b.ReportMetric(0, "ns/op")
		runtime.KeepAlive(st)
		runtime.KeepAlive(rows)
	}
}

func liveHeapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
