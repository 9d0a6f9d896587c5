package nodeagent

import (
	"context"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/nodeagent/runtime"
)

// Usage samples the CPU and memory of the node and of its pods' containers
// twice, window apart, and reports CPU as millicores over that window (as
// metrics-server does from kubelet's counters).
func (a *Agent) Usage(ctx context.Context, window time.Duration) (*api.Usage, error) {
	type sample struct {
		cpu, mem uint64
		ns, name string
	}
	take := func() (map[string]sample, uint64, error) {
		infos, err := a.rt.List(ctx)
		if err != nil {
			return nil, 0, err
		}
		out := map[string]sample{}
		for _, in := range infos {
			if in.State != runtime.StateRunning {
				continue
			}
			st, err := a.rt.Stats(ctx, in.ID)
			if err != nil {
				continue // it may just have ended
			}
			out[in.ID] = sample{cpu: st.CPUUsageNanos, mem: st.MemoryUsageBytes, ns: in.PodNamespace(), name: in.PodName()}
		}
		return out, nodeCPUNanos(), nil
	}
	first, node0, err := take()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(window):
	}
	second, node1, err := take()
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(t0)
	millis := func(d uint64) int64 { return int64(float64(d) / float64(elapsed.Nanoseconds()) * 1000) }
	u := &api.Usage{Node: a.Node, Cores: int64(goruntime.NumCPU())}
	u.Mem, u.Total = nodeMemory()
	if node1 > node0 {
		u.CPU = millis(node1 - node0)
	}
	byPod := map[string]*api.PodUsage{}
	for id, s := range second {
		key := s.ns + "/" + s.name
		p := byPod[key]
		if p == nil {
			p = &api.PodUsage{Namespace: s.ns, Name: s.name}
			byPod[key] = p
		}
		p.Mem += int64(s.mem)
		if f, ok := first[id]; ok && s.cpu >= f.cpu {
			p.CPU += millis(s.cpu - f.cpu)
		}
	}
	for _, p := range byPod {
		u.Pods = append(u.Pods, *p)
	}
	return u, nil
}

// nodeCPUNanos is the CPU time the node spent busy, from /proc/stat.
func nodeCPUNanos() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy uint64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		busy += n
	}
	return busy * uint64(time.Second/100) // USER_HZ is 100 on Linux
}

// MemoryTotal is the machine's memory in bytes (0 when unknown).
func MemoryTotal() int64 {
	_, total := nodeMemory()
	return total
}

// nodeMemory is the memory in use and the total, from /proc/meminfo.
func nodeMemory() (used, total int64) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	var avail int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = kb * 1024
		case "MemAvailable:":
			avail = kb * 1024
		}
	}
	return total - avail, total
}
