package runtime

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"testing"
	"time"
)

// BenchmarkContainerStart measures Start (create container and snapshot, create and start
// the task, until the process runs) with the image already present, and in the same run
// the floor: Debian's `ctr run --rm` of the same image. It reports p50-ms and p90-ms of
// Start and ctr-p50-ms. Removal is not timed.
func BenchmarkContainerStart(b *testing.B) {
	rt := needRuntime(b)
	ctx := context.Background()
	const samples = 20
	var starts []time.Duration
	for i := 0; i < b.N; i++ {
		starts = starts[:0]
		for j := 0; j < samples; j++ {
			s := ContainerSpec{
				PodUID: randomID(), PodName: "bench", PodNamespace: "default", ContainerName: "main",
				Image: busybox, Command: []string{"sleep", "1000"},
				LogPath: fmt.Sprintf("%s/bench/%d.log", b.TempDir(), j),
			}
			t0 := time.Now()
			c, err := rt.Start(ctx, s)
			if err != nil {
				b.Fatal(err)
			}
			starts = append(starts, time.Since(t0))
			b.StopTimer()
			if err := rt.Remove(ctx, c.ID); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(starts, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(starts, 90)), "p90-ms")

	// The floor: ctr run --rm of the same image (create, start, run `true`, delete).
	var ctrRuns []time.Duration
	for j := 0; j < samples; j++ {
		id := "ctr-bench-" + randomID()
		t0 := time.Now()
		out, err := exec.Command("ctr", "--address", env.daemon.Socket(), "-n", testNamespace,
			"run", "--rm", busybox, id, "true").CombinedOutput()
		if err != nil {
			b.Fatalf("ctr run: %v: %s", err, out)
		}
		ctrRuns = append(ctrRuns, time.Since(t0))
	}
	RemoveEmptyCgroup("/" + testNamespace) // ctr's parent of its containers' cgroups
	b.ReportMetric(ms(percentile(ctrRuns, 50)), "ctr-p50-ms")
	b.ReportMetric(0, "ns/op")
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
