package network

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkSetupTeardown measures one pod's network setup and teardown
// (namespace, loopback, bridge + host-local, portmap with and without a host
// port) and reports their p50 and p90 in milliseconds.
func BenchmarkSetupTeardown(b *testing.B) {
	requireRoot(b)
	for _, withPort := range []bool{false, true} {
		name := "noHostPort"
		n := 9
		if withPort {
			name, n = "hostPort", 10
		}
		b.Run(name, func(b *testing.B) {
			m := newTestManager(b, testConfig(b, n, 24))
			var ports []PortMapping
			if withPort {
				ports = []PortMapping{{HostPort: freePort(b), ContainerPort: 8080}}
			}
			ctx := b.Context()
			var setups, teardowns []time.Duration
			i := 0
			for b.Loop() {
				p := PodRef{UID: fmt.Sprintf("bench-%d", i), Namespace: "default", Name: "bench"}
				i++
				start := time.Now()
				if _, err := m.Setup(ctx, p, ports); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := m.Teardown(ctx, p); err != nil {
					b.Fatal(err)
				}
				setups = append(setups, mid.Sub(start))
				teardowns = append(teardowns, time.Since(mid))
			}
			b.ReportMetric(percentileMs(setups, 50), "setup-p50-ms")
			b.ReportMetric(percentileMs(setups, 90), "setup-p90-ms")
			b.ReportMetric(percentileMs(teardowns, 50), "teardown-p50-ms")
		})
	}
}

func percentileMs(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[(len(s)-1)*p/100]) / float64(time.Millisecond)
}
