package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/gittest"
)

// metricValue returns the value of series (a metric name with its labels,
// as /metrics prints them) in Prometheus text output.
func metricValue(text, series string) (float64, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

func TestMetricValue(t *testing.T) {
	text := `# HELP keelson_sync_failures_total Sync failures.
# TYPE keelson_sync_failures_total counter
keelson_sync_failures_total{reason="invalid"} 2
keelson_sync_failures_total{reason="source"} 0
keelson_sync_last_applied_timestamp_seconds 1.7145e+09
`
	tests := []struct {
		series string
		want   float64
		found  bool
	}{
		{`keelson_sync_failures_total{reason="invalid"}`, 2, true},
		{`keelson_sync_failures_total{reason="source"}`, 0, true},
		{`keelson_sync_last_applied_timestamp_seconds`, 1.7145e9, true},
		{`keelson_sync_failures_total`, 0, false},
		{`keelson_sync_failures_total{reason="other"}`, 0, false},
	}
	for _, tt := range tests {
		got, found := metricValue(text, tt.series)
		if got != tt.want || found != tt.found {
			t.Errorf("metricValue(%s) = %v, %v; want %v, %v", tt.series, got, found, tt.want, tt.found)
		}
	}
}

// TestHealthAndSyncMetrics reads a running controller's /healthz and
// /metrics: the sync metrics are there from the first applied commit, a
// rejected commit counts as a failure and leaves the last applied time
// alone, and the next good commit moves it.
func TestHealthAndSyncMetrics(t *testing.T) {
	repo := gittest.NewRepo(t, "", "deploy")
	start := time.Now()
	good := repo.CommitFiles("good", map[string]string{"cm.yaml": configMap(0)})
	server := startController(t, repo.Dir, "")

	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(server + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
		}
		return string(b)
	}
	const (
		applied     = `keelson_sync_duration_seconds_count{result="applied"}`
		failed      = `keelson_sync_duration_seconds_count{result="failed"}`
		lastApplied = `keelson_sync_last_applied_timestamp_seconds`
		invalid     = `keelson_sync_failures_total{reason="invalid"}`
		source      = `keelson_sync_failures_total{reason="source"}`
	)
	// metrics reads /metrics once the applied commit is sha and the sync
	// state is state.
	metrics := func(sha, state string) map[string]float64 {
		t.Helper()
		eventually(t, "commit "+sha[:12]+" "+state, func() string {
			code, out, errOut := cli(t, "status", "--server", server)
			if code != 0 {
				return errOut
			}
			if !strings.Contains(out, "Sync:     "+state) {
				return out
			}
			if state == "Synced" && !strings.Contains(out, "Applied:  "+sha[:12]) ||
				state == "Failed" && !strings.Contains(out, "Rejected: "+sha[:12]) {
				return out
			}
			return ""
		})
		text := get("/metrics")
		m := map[string]float64{}
		for _, s := range []string{applied, failed, lastApplied, invalid, source} {
			v, ok := metricValue(text, s)
			if !ok {
				t.Fatalf("/metrics lacks %s:\n%s", s, text)
			}
			m[s] = v
		}
		return m
	}

	if got := get("/healthz"); strings.TrimSpace(got) != "ok" {
		t.Errorf("/healthz = %q, want ok", got)
	}
	m0 := metrics(good, "Synced")
	if m0[applied] < 1 {
		t.Errorf("%s = %v after the first commit, want at least 1", applied, m0[applied])
	}
	if at := time.Unix(0, int64(m0[lastApplied]*1e9)); at.Before(start.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("%s = %v (%v), want between %v and now", lastApplied, m0[lastApplied], at, start)
	}
	if m0[invalid] != 0 || m0[failed] != 0 {
		t.Errorf("failures before any bad commit: %s = %v, %s = %v", invalid, m0[invalid], failed, m0[failed])
	}

	bad := repo.CommitFiles("bad", map[string]string{"bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\nspec: {}\n"})
	m1 := metrics(bad, "Failed")
	if m1[invalid] != m0[invalid]+1 {
		t.Errorf("%s = %v after a bad commit, want %v", invalid, m1[invalid], m0[invalid]+1)
	}
	if m1[failed] != m0[failed]+1 {
		t.Errorf("%s = %v after a bad commit, want %v", failed, m1[failed], m0[failed]+1)
	}
	if m1[lastApplied] != m0[lastApplied] || m1[applied] != m0[applied] {
		t.Errorf("a bad commit moved the applied metrics: %s %v -> %v, %s %v -> %v", lastApplied, m0[lastApplied], m1[lastApplied], applied, m0[applied], m1[applied])
	}
	if m1[source] != m0[source] {
		t.Errorf("%s moved from %v to %v on a bad commit, which is not a source failure", source, m0[source], m1[source])
	}

	repo.Remove("bad.yaml")
	fixed := repo.CommitFiles("fix", map[string]string{"cm.yaml": configMap(1)})
	m2 := metrics(fixed, "Synced")
	if m2[lastApplied] <= m1[lastApplied] || m2[applied] != m1[applied]+1 {
		t.Errorf("a good commit after a bad one: %s %v -> %v, %s %v -> %v", lastApplied, m1[lastApplied], m2[lastApplied], applied, m1[applied], m2[applied])
	}
	if m2[invalid] != m1[invalid] {
		t.Errorf("%s moved from %v to %v on a good commit", invalid, m1[invalid], m2[invalid])
	}
}
