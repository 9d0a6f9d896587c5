package ingress

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	routing "github.com/keelson/keelson/ingress"
)

// connCounter is a backend that counts the connections it was opened and
// has open.
type connCounter struct {
	srv          *httptest.Server
	opened, open atomic.Int64
}

func newConnCounter(t *testing.T, h http.HandlerFunc, idleTimeout time.Duration) *connCounter {
	t.Helper()
	c := &connCounter{}
	c.srv = httptest.NewUnstartedServer(h)
	c.srv.Config.IdleTimeout = idleTimeout
	c.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			c.opened.Add(1)
			c.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			c.open.Add(-1)
		}
	}
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	return c
}

func (c *connCounter) proxy(t *testing.T, cfg Config) (*testProxy, world) {
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix / svc")},
		services:  map[string][]string{"svc": {c.srv.Listener.Addr().String()}},
	}
	return startProxy(t, cfg, w.table(t)), w
}

// TestUpstreamKeepAlive: sequential requests of every kind of answer share
// one upstream connection.
func TestUpstreamKeepAlive(t *testing.T) {
	c := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			io.WriteString(w, "part one, ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.WriteHeader(http.StatusNotModified)
		default:
			io.WriteString(w, "plain")
		}
	}, 0)
	p, _ := c.proxy(t, Config{})
	cl := p.client(false)
	for range 3 {
		for _, tc := range []struct {
			method, path string
			code         int
			body         string
		}{
			{"GET", "/chunked", 200, "part one, part two"},
			{"GET", "/empty", 204, ""},
			{"GET", "/notmodified", 304, ""},
			{"HEAD", "/plain", 200, ""},
			{"POST", "/plain", 200, "plain"},
			{"GET", "/plain", 200, "plain"},
		} {
			var body io.Reader
			if tc.method == "POST" {
				body = strings.NewReader(strings.Repeat("x", 100000))
			}
			req, _ := http.NewRequest(tc.method, "http://a.example.com"+tc.path, body)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || string(b) != tc.body {
				t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, b, tc.code, tc.body)
			}
		}
	}
	if n := c.opened.Load(); n != 1 {
		t.Errorf("%d upstream connections for 18 sequential requests, want 1", n)
	}
}

// TestUpstreamIdleClosedByEndpoint: an endpoint that closes idle
// connections costs no failed request, whether the proxy notices before
// reusing the connection (after a longer idle time) or on sending (a GET,
// sent again on a new connection).
func TestUpstreamIdleClosedByEndpoint(t *testing.T) {
	c := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}, 30*time.Millisecond)
	p, _ := c.proxy(t, Config{})
	cl := p.client(false)
	send := func(method string) {
		t.Helper()
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("body")
		}
		req, _ := http.NewRequest(method, "http://a.example.com/", body)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "ok" {
			t.Errorf("%s: %d %q", method, resp.StatusCode, b)
		}
	}
	send("GET")
	for _, tc := range []struct {
		idle   time.Duration
		method string
	}{
		{100 * time.Millisecond, "GET"},                 // not checked: fails on the closed connection, sent again
		{checkIdleAfter + 100*time.Millisecond, "POST"}, // checked before reuse
		{checkIdleAfter + 100*time.Millisecond, "GET"},
	} {
		waitFor(t, "the endpoint to close its idle connection", func() bool { return c.open.Load() == 0 })
		time.Sleep(tc.idle)
		send(tc.method)
	}
	if n := c.opened.Load(); n != 4 {
		t.Errorf("%d upstream connections, want 4", n)
	}
}

// rawBackend answers every request on its connections with answer, as
// written.
func rawBackend(t *testing.T, answer string, delay time.Duration) string {
	t.Helper()
	return serveRaw(t, func(conn net.Conn) {
		br := bufio.NewReader(conn)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			time.Sleep(delay)
			if _, err := io.WriteString(conn, answer); err != nil {
				return
			}
		}
	})
}

// TestUpstreamInformational: 1xx answers before the real one are skipped.
func TestUpstreamInformational(t *testing.T) {
	addr := rawBackend(t, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
		"HTTP/1.1 100 Continue\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Real: yes\r\n\r\nfinal", 0)
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix / svc")},
		services:  map[string][]string{"svc": {addr}},
	}
	p := startProxy(t, Config{}, w.table(t))
	for range 2 { // the second on the same upstream connection
		code, body, h := get(t, p.client(false), "http://a.example.com/")
		if code != 200 || body != "final" || h.Get("X-Real") != "yes" {
			t.Errorf("%d %q %v", code, body, h)
		}
	}
}

// TestUpstreamTimeouts: an endpoint slower than ResponseHeaderTimeout gets
// a 504; one that cannot be reached at all a 502.
func TestUpstreamTimeouts(t *testing.T) {
	slow := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", time.Second)
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "slow.example.com Prefix / slow", "down.example.com Prefix / down")},
		services:  map[string][]string{"slow": {slow}, "down": {closedAddr(t)}},
	}
	p := startProxy(t, Config{ResponseHeaderTimeout: 200 * time.Millisecond}, w.table(t))
	start := time.Now()
	code, body, _ := get(t, p.client(false), "http://slow.example.com/")
	if code != http.StatusGatewayTimeout || time.Since(start) > 900*time.Millisecond {
		t.Errorf("slow endpoint: %d %q after %v, want 504 after 200 ms", code, body, time.Since(start))
	}
	code, body, _ = get(t, p.client(false), "http://down.example.com/")
	if code != http.StatusBadGateway || !strings.Contains(body, "default/down") {
		t.Errorf("unreachable endpoint: %d %q, want 502 naming the service", code, body)
	}
}

// TestUpstreamUnfinishedBody: when the client goes away during a large
// answer, the upstream connection is closed, not reused with the rest of the
// answer unread.
func TestUpstreamUnfinishedBody(t *testing.T) {
	big := strings.Repeat("x", 8<<20)
	c := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "small")
	}, 0)
	p, _ := c.proxy(t, Config{})
	cl := p.client(false)
	resp, err := cl.Get("http://a.example.com/big")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	io.ReadFull(resp.Body, buf)
	resp.Body.Close() // a partly read body closes the client's connection
	waitFor(t, "the upstream connection of the unfinished answer to close", func() bool { return c.open.Load() == 0 })
	if code, body, _ := get(t, cl, "http://a.example.com/small"); code != 200 || body != "small" {
		t.Errorf("next request: %d %q", code, body)
	}
	if n := c.opened.Load(); n != 2 {
		t.Errorf("%d upstream connections, want 2", n)
	}
}

// TestUpstreamGoneEndpoint: idle connections to an endpoint that a new table
// no longer has are closed.
func TestUpstreamGoneEndpoint(t *testing.T) {
	c := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }, 0)
	p, w := c.proxy(t, Config{})
	get(t, p.client(false), "http://a.example.com/")
	if c.open.Load() != 1 {
		t.Fatalf("%d open upstream connections, want 1", c.open.Load())
	}
	w.services["svc"] = nil
	p.Update(w.table(t))
	waitFor(t, "the idle connection to the gone endpoint to close", func() bool { return c.open.Load() == 0 })
}

// TestClientGone: a client that gives up while the endpoint is still
// thinking ends the upstream request at once, counted as a 499 (4xx): over
// plain HTTP, and over TLS, where the client says close_notify before it
// closes (bytes the proxy has not read when the FIN comes).
func TestClientGone(t *testing.T) {
	slow := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", time.Second)
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			w := world{
				ingresses: []*networkingv1.Ingress{withAnnotation(withTLS(ingress("i", "slow.example.com Prefix / slow"), "cert", "slow.example.com"), routing.AnnotationSSLRedirect, "false")},
				services:  map[string][]string{"slow": {slow}},
				secrets:   []*corev1.Secret{tlsSecret(t, "cert", "slow.example.com")},
			}
			var log syncBuffer
			p := startProxy(t, Config{AccessLog: &log}, w.table(t))
			c := p.client(false)
			c.Timeout = 100 * time.Millisecond
			start := time.Now()
			if _, err := c.Get(scheme + "://slow.example.com/"); err == nil {
				t.Fatal("the client did not time out")
			}
			waitFor(t, "the request to end", func() bool { return strings.Contains(log.String(), `"GET / HTTP/1.1" 499`) })
			if d := time.Since(start); d > 800*time.Millisecond {
				t.Errorf("the request ended after %v, when the endpoint answered: not when the client went", d)
			}
			rs := p.state.Load().routes[p.Table().Routes()[0]]
			if n := testutil.ToFloat64(rs.byClass[4]); n != 1 {
				t.Errorf("4xx count %v, want 1", n)
			}
		})
	}
}
