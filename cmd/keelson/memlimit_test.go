package main

import "testing"

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
