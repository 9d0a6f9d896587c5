package reconciler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keelson/keelson/store"
)

// Metrics are the sync metrics served on /metrics. A nil *Metrics records nothing.
type Metrics struct {
	syncDuration *prometheus.HistogramVec
	lastApplied  prometheus.Gauge
	failures     *prometheus.CounterVec
	objects      prometheus.Gauge
}

// NewMetrics registers the sync metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keelson_sync_duration_seconds",
			Help:    "Time from seeing a commit to the store holding it (or rejecting it).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"result"}),
		lastApplied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keelson_sync_last_applied_timestamp_seconds",
			Help: "Unix time at which the last good revision was applied.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keelson_sync_failures_total",
			Help: "Sync failures: source (the repository could not be fetched) or invalid (a revision was rejected).",
		}, []string{"reason"}),
		objects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keelson_desired_objects",
			Help: "Objects in the applied revision.",
		}),
	}
	// Every known series exists from the start, at zero: a scrape before
	// the first failure shows keelson_sync_failures_total 0, not nothing,
	// so that rate() and alerts see the first increase.
	for _, result := range []string{"applied", "failed"} {
		m.syncDuration.WithLabelValues(result)
	}
	for _, reason := range []string{"source", "invalid"} {
		m.failures.WithLabelValues(reason)
	}
	reg.MustRegister(m.syncDuration, m.lastApplied, m.failures, m.objects)
	return m
}

func (m *Metrics) observeApply(rec *store.Revision, d time.Duration) {
	if m == nil {
		return
	}
	if rec.Status == store.RevisionApplied {
		m.syncDuration.WithLabelValues("applied").Observe(d.Seconds())
		m.lastApplied.Set(float64(rec.AppliedAt.UnixNano()) / 1e9)
		m.objects.Set(float64(rec.Objects))
		return
	}
	m.syncDuration.WithLabelValues("failed").Observe(d.Seconds())
	m.failures.WithLabelValues("invalid").Inc()
}

func (m *Metrics) observeSourceError() {
	if m == nil {
		return
	}
	m.failures.WithLabelValues("source").Inc()
}
