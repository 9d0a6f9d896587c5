package ingress

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	routing "github.com/keelson/keelson/ingress"
)

// metrics are the proxy's Prometheus metrics. A route's series are made
// when its table arrives and deleted when a table no longer has it.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  prometheus.Counter
}

// routeLabels name a route: its Ingress ("namespace/name"), host, path and
// path type as in the table, and its backend ("namespace/service:port").
// Requests that no route matches have them all empty.
var routeLabels = []string{"ingress", "host", "path", "path_type", "service"}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keelson_ingress_requests_total",
			Help: "Requests the Ingress proxy answered, by route and status code class (2xx, 3xx, 4xx, 5xx; 1xx for upgrades).",
		}, append(routeLabels[:len(routeLabels):len(routeLabels)], "code")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keelson_ingress_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, routeLabels),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keelson_ingress_upstream_retries_total",
			Help: "Requests sent to another endpoint because one refused the connection.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.retries} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// routeMetrics are one route's series, looked up once per table.
type routeMetrics struct {
	labels  prometheus.Labels
	byClass [6]prometheus.Counter // 1xx … 5xx at their hundreds
	latency prometheus.Observer
}

func labelsOf(r *routing.Route) prometheus.Labels {
	if r == nil {
		return prometheus.Labels{"ingress": "", "host": "", "path": "", "path_type": "", "service": ""}
	}
	svc := ""
	if r.Backend.Service.Name != "" {
		svc = r.Backend.Service.String() + ":" + r.Backend.Port
	}
	return prometheus.Labels{"ingress": r.Ingress.String(), "host": r.Host, "path": r.Path, "path_type": string(r.PathType), "service": svc}
}

func (m *metrics) forRoute(r *routing.Route) routeMetrics {
	l := labelsOf(r)
	rm := routeMetrics{labels: l, latency: m.duration.With(l)}
	for c := 1; c <= 5; c++ {
		lc := prometheus.Labels{"code": string(rune('0'+c)) + "xx"}
		for k, v := range l {
			lc[k] = v
		}
		rm.byClass[c] = m.requests.With(lc)
	}
	return rm
}

func (rm *routeMetrics) observe(code int, d time.Duration) {
	c := min(max(code/100, 1), 5)
	rm.byClass[c].Inc()
	rm.latency.Observe(d.Seconds())
}

// forget deletes the series of the routes old has and cur does not.
func (m *metrics) forget(old, cur *state) {
	keep := map[string]bool{}
	key := func(l prometheus.Labels) string {
		return l["ingress"] + "\x00" + l["host"] + "\x00" + l["path"] + "\x00" + l["path_type"] + "\x00" + l["service"]
	}
	for _, rs := range cur.routes {
		keep[key(rs.labels)] = true
	}
	for _, rs := range old.routes {
		if !keep[key(rs.labels)] {
			m.requests.DeletePartialMatch(rs.labels)
			m.duration.Delete(rs.labels)
		}
	}
}
