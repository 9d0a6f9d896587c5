package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMemoryLimit(t *testing.T) {
	const mi = 1 << 20
	for _, tc := range []struct {
		flag       string
		live, want int64
	}{
		{"150Mi", 40 * mi, 150 * mi},  // a small cluster: the configured limit
		{"150Mi", 120 * mi, 150 * mi}, // a quarter over the live heap is still under it
		{"150Mi", 160 * mi, 200 * mi}, // a live heap that outgrew it takes it up
		{"1Gi", 160 * mi, 1024 * mi},  // a higher one stays
		{"157286400", 0, 150 * mi},    // bytes
	} {
		limit, err := parseMemoryLimit(tc.flag)
		if err != nil {
			t.Fatal(err)
		}
		if got := memoryLimitFor(limit, tc.live); got != tc.want {
			t.Errorf("--memory-limit %s, live heap %d MiB: limit %d MiB, want %d MiB", tc.flag, tc.live/mi, got/mi, tc.want/mi)
		}
	}
	for _, flag := range []string{"", "0"} {
		if limit, err := parseMemoryLimit(flag); err != nil || limit != 0 {
			t.Errorf("--memory-limit %q: %d, %v; want none", flag, limit, err)
		}
	}
	for _, flag := range []string{"lots", "-1Mi"} {
		if _, err := parseMemoryLimit(flag); err == nil {
			t.Errorf("--memory-limit %q: no error", flag)
		}
	}
}

// TestCgroupMemoryLimit reads the limit of the process's cgroup in the
// layouts hosts have: cgroup v2, v1, and both (hybrid).
func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cgroup string
		files  map[string]string
		want   int64
	}{
		{"v2", "0::/kubepods/ctl\n", map[string]string{"kubepods/ctl/memory.max": "536870912\n"}, 512 << 20},
		{"v2 without a limit", "0::/ctl\n", map[string]string{"ctl/memory.max": "max\n"}, 0},
		{"v1", "4:memory:/ctl\n1:cpu,cpuacct:/\n", map[string]string{"memory/ctl/memory.limit_in_bytes": "268435456\n"}, 256 << 20},
		{"v1 without a limit", "4:memory:/ctl\n0::/\n", map[string]string{"memory/ctl/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"hybrid, memory in v2", "4:cpu:/\n0::/ctl\n", map[string]string{"unified/ctl/memory.max": "1073741824\n"}, 1 << 30},
		{"no cgroup file", "", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "cgroup")
			if tc.cgroup != "" {
				if err := os.WriteFile(self, []byte(tc.cgroup), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range tc.files {
				p := filepath.Join(dir, "fs", name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := cgroupMemoryLimit(self, filepath.Join(dir, "fs")); got != tc.want {
				t.Errorf("limit %d, want %d", got, tc.want)
			}
		})
	}
}

func TestShouldRelease(t *testing.T) {
	const mi = 1 << 20
	for _, tc := range []struct {
		name                          string
		since, lastPeriod, peak, live uint64
		want                          bool
	}{
		{"quiet after a burst", 800 * mi, 0, 100 * mi, 127 * mi, true},
		{"the steady trickle after a burst", 800 * mi, 3 * mi, 100 * mi, 127 * mi, true},
		{"a burst still going", 800 * mi, 100 * mi, 100 * mi, 127 * mi, false},
		{"a burst going up and down", 600 * mi, 104 * mi, 248 * mi, 127 * mi, false},
		{"a burst winding down", 600 * mi, 41 * mi, 248 * mi, 127 * mi, true},
		{"a burst starting", 70 * mi, 60 * mi, 60 * mi, 127 * mi, false},
		{"quiet, but little garbage since the last release", 20 * mi, 0, 20 * mi, 127 * mi, false},
		{"the trickle filled half the heap", 64 * mi, 2 * mi, 3 * mi, 127 * mi, true},
		{"a small heap after its burst", 40 * mi, 500 << 10, 10 * mi, 6 * mi, true},
		{"no heap yet", 10 * mi, 0, 10 * mi, 0, false},
	} {
		if got := shouldRelease(tc.since, tc.lastPeriod, tc.peak, tc.live); got != tc.want {
			t.Errorf("%s: shouldRelease(%d MiB since, %d KiB last period, %d MiB peak, %d MiB live) = %v, want %v",
				tc.name, tc.since/mi, tc.lastPeriod>>10, tc.peak/mi, tc.live/mi, got, tc.want)
		}
	}
}

func TestBusyPeriod(t *testing.T) {
	const mi = 1 << 20
	for _, tc := range []struct {
		name      string
		allocated uint64
		live      uint64
		every     time.Duration
		want      bool
	}{
		{"leases and a pass at 100,000 pods", 7 * mi, 135 * mi, time.Second, false},
		{"5,000 nodes renewing together, over five seconds", 60 * mi, 135 * mi, 5 * time.Second, false},
		{"agents reporting 100,000 pods", 90 * mi, 135 * mi, time.Second, true},
		{"just over an eighth of the heap", 17 * mi, 128 * mi, time.Second, true},
		{"the same over two seconds", 17 * mi, 128 * mi, 2 * time.Second, false},
		{"a small heap's burst under a MiB a second", 900 << 10, 2 * mi, time.Second, false},
		{"a small heap's burst", 5 * mi, 6 * mi, time.Second, true},
		{"nothing", 0, 0, time.Second, false},
	} {
		if got := busyPeriod(tc.allocated, tc.live, tc.every); got != tc.want {
			t.Errorf("%s: busyPeriod(%d KiB, %d MiB live, %v) = %v, want %v", tc.name, tc.allocated>>10, tc.live/mi, tc.every, got, tc.want)
		}
	}
}
