package reconciler

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// histCount is the number of observations of the sync duration histogram
// with result, as reg serves it.
func histCount(t *testing.T, reg *prometheus.Registry, result string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "keelson_sync_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	t.Fatalf("keelson_sync_duration_seconds{result=%q} not served", result)
	return 0
}

func TestMetrics(t *testing.T) {
	st, err := store.New()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	t0 := time.Unix(1700000000, 0)
	now := t0
	a := NewApplier(st, manifest.NewLoader(manifest.Options{}), m, slog.New(slog.DiscardHandler), func() time.Time { return now })

	// Before anything happened, every series is served, at zero.
	for name, want := range map[string]int{"keelson_sync_failures_total": 2, "keelson_sync_duration_seconds": 2} {
		if got := testutil.CollectAndCount(reg, name); got != want {
			t.Errorf("%s: %d series before any sync, want %d", name, got, want)
		}
	}

	type values struct {
		Applied, Failed      uint64  // sync duration observations by result
		Invalid, Source      float64 // failures by reason
		LastApplied, Objects float64
	}
	read := func() values {
		return values{
			Applied:     histCount(t, reg, "applied"),
			Failed:      histCount(t, reg, "failed"),
			Invalid:     testutil.ToFloat64(m.failures.WithLabelValues("invalid")),
			Source:      testutil.ToFloat64(m.failures.WithLabelValues("source")),
			LastApplied: testutil.ToFloat64(m.lastApplied),
			Objects:     testutil.ToFloat64(m.objects),
		}
	}
	t1 := t0.Add(time.Hour)
	steps := []struct {
		name string
		at   time.Time
		do   func() error
		want values
	}{
		{"nothing yet", t0, func() error { return nil }, values{}},
		{"good revision", t0, func() error {
			_, err := a.Apply(revision("good", map[string]string{"a.yaml": cmA, "b.yaml": cmB}), now)
			return err
		}, values{Applied: 1, LastApplied: float64(t0.Unix()), Objects: 2}},
		{"bad revision", t0, func() error {
			_, err := a.Apply(revision("bad", map[string]string{"a.yaml": cmA, "b.yaml": strings.Replace(cmB, "data:", "spec:", 1)}), now)
			return err
		}, values{Applied: 1, Failed: 1, Invalid: 1, LastApplied: float64(t0.Unix()), Objects: 2}},
		{"source down", t0, func() error { return a.SourceError(errors.New("connection refused")) },
			values{Applied: 1, Failed: 1, Invalid: 1, Source: 1, LastApplied: float64(t0.Unix()), Objects: 2}},
		{"fixed an hour later", t1, func() error {
			_, err := a.Apply(revision("fixed", map[string]string{"a.yaml": cmA}), now)
			return err
		}, values{Applied: 2, Failed: 1, Invalid: 1, Source: 1, LastApplied: float64(t1.Unix()), Objects: 1}},
	}
	for _, s := range steps {
		now = s.at
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if diff := cmp.Diff(s.want, read()); diff != "" {
			t.Errorf("after %s (-want +got):\n%s", s.name, diff)
		}
	}
}
