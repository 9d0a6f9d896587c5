package ingress

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	routing "github.com/keelson/keelson/ingress"
)

// state is what one table serves with: the table and a proxy per route.
// It is immutable but for the round-robin counters.
type state struct {
	table     *routing.Table
	routes    map[*routing.Route]*routeState
	unmatched *routeState // the metrics of requests no route matched
}

// routeState serves one route.
type routeState struct {
	route *routing.Route
	proxy *httputil.ReverseProxy // HTTP/2
	fast  *fastEndpoints         // HTTP/1.1
	routeMetrics
}

func (s *Server) newState(t *routing.Table, old *state) *state {
	st := &state{table: t, routes: map[*routing.Route]*routeState{}}
	for _, r := range t.Routes() {
		rs := &routeState{route: r, routeMetrics: s.metrics.forRoute(r)}
		if r.Backend.Unavailable == "" && len(r.Backend.Endpoints) > 0 {
			et := &endpointTransport{up: s.upstream, endpoints: r.Backend.Endpoints, log: s.log, retries: s.metrics.retries}
			rs.proxy = s.newProxy(r, et)
			rs.fast = &fastEndpoints{up: s.upstream, t: et}
		}
		st.routes[r] = rs
	}
	st.unmatched = &routeState{routeMetrics: s.metrics.forRoute(nil)}
	if old != nil {
		s.metrics.forget(old, st)
	}
	return st
}

// newProxy makes the reverse proxy of one route.
func (s *Server) newProxy(r *routing.Route, et *endpointTransport) *httputil.ReverseProxy {
	first := r.Backend.Endpoints[0]
	backend := r.Backend.Service.String() + ":" + r.Backend.Port
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = first // endpointTransport picks the endpoint
			if pr.Out.Body != nil {
				pr.Out.Body = &trackedBody{ReadCloser: pr.Out.Body}
			}
		},
		Transport:     et,
		FlushInterval: 0, // ReverseProxy flushes every write of event streams and of bodies of unknown length
		BufferPool:    s.bufs,
		ErrorLog:      s.errorLog,
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			code, msg := http.StatusBadGateway, "502 bad gateway: no answer from service "+backend
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
				code, msg = http.StatusGatewayTimeout, "504 gateway timeout: service "+backend+" did not answer in time"
			}
			if req.Context().Err() != nil {
				// The client went away, or the proxy is closing: nobody reads
				// this, and the metrics and the access log count it as
				// nginx does, 499.
				s.log.Debug("request canceled", "host", req.Host, "path", req.URL.Path, "err", err)
				code, msg = statusClientClosed, "499 client closed request"
			} else {
				s.log.Info("upstream error", "backend", backend, "host", req.Host, "path", req.URL.Path, "err", err)
			}
			http.Error(w, msg, code)
		},
	}
}

// statusClientClosed is nginx's status for a request whose client went away
// before the answer.
const statusClientClosed = 499

// maxTries bounds the endpoints one request tries.
const maxTries = 3

// endpointTransport sends a request to the route's endpoints in turn (round
// robin) and retries on the next when a connection cannot be made.
type endpointTransport struct {
	up        *upstream
	endpoints []string
	next      atomic.Uint32
	log       *slog.Logger
	retries   prometheus.Counter
}

// RoundTrip sends req, which the route's ReverseProxy made for this one
// trip: it sets the endpoint in req.URL.Host on each try, which no one else
// reads while RoundTrip runs.
func (t *endpointTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, _ := req.Body.(*trackedBody)
	var err error
	retry := false
	for addr := range t.tries {
		if retry {
			t.retries.Inc()
		}
		req.URL.Host = addr
		var resp *http.Response
		if resp, err = t.up.roundTrip(req, addr); err == nil {
			return resp, nil
		}
		var de *dialError
		if !errors.As(err, &de) || req.Context().Err() != nil || (body != nil && body.read.Load()) {
			return nil, err
		}
		t.log.Debug("endpoint refused a connection; trying the next", "endpoint", addr, "err", err)
		retry = true
	}
	return nil, err
}

// tries yields the endpoints one request may try, in turn: from the next
// in round robin, at most maxTries of them.
func (t *endpointTransport) tries(yield func(addr string) bool) {
	n := uint32(len(t.endpoints))
	first := t.next.Add(1)
	for i := range min(n, maxTries) {
		if !yield(t.endpoints[(first+i)%n]) {
			return
		}
	}
}

// trackedBody is a request body that tells whether any of it was read, and
// that the transport cannot close: a failed try must leave it whole for the
// next. The server closes the real body when the request ends.
type trackedBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.ReadCloser.Read(p)
}

func (b *trackedBody) Close() error { return nil }

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }
