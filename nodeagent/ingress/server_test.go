package ingress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	routing "github.com/keelson/keelson/ingress"
	"github.com/keelson/keelson/internal/syncbuf"
)

// TestRouting sends requests by host and path and checks which backend
// answers.
func TestRouting(t *testing.T) {
	bs := map[string]*testBackend{}
	w := world{services: map[string][]string{}}
	for _, n := range []string{"exact", "prefix", "api", "wild", "any", "default"} {
		bs[n] = newBackend(t, n)
		w.services[n] = []string{bs[n].addr()}
	}
	w.ingresses = []*networkingv1.Ingress{
		ingress("site",
			"shop.example.com Exact /cart exact",
			"shop.example.com Prefix /cart prefix",
			"shop.example.com Prefix /api/ api",
			"*.example.com Prefix / wild",
			"- Prefix /anyhost any",
		),
		withDefaultBackend(ingress("fallback"), "default"),
	}
	p := startProxy(t, Config{}, w.table(t))
	c := p.client(false)
	for _, tc := range []struct{ url, want string }{
		{"http://shop.example.com/cart", "exact"},
		{"http://shop.example.com/cart/", "prefix"},
		{"http://shop.example.com/cart/items", "prefix"},
		{"http://shop.example.com/api", "api"},
		{"http://shop.example.com/api/v1?x=1", "api"},
		{"http://shop.example.com/apiary", "wild"}, // falls through to the wildcard host
		{"http://blog.example.com/anything", "wild"},
		{"http://a.blog.example.com/anything", "default"}, // a wildcard is one label
		{"http://other.test/anyhost/x", "any"},
		{"http://other.test/elsewhere", "default"},
	} {
		e := getEcho(t, c, tc.url)
		if e.Backend != tc.want {
			t.Errorf("%s went to %s, want %s", tc.url, e.Backend, tc.want)
		}
	}
	// The backend sees the path, query and Host as sent.
	e := getEcho(t, c, "http://shop.example.com/api/v1?x=1&y=%20")
	if diff := cmp.Diff(echo{Backend: "api", Host: "shop.example.com", Path: "/api/v1", Query: "x=1&y=%20",
		XForwardedFor: "127.0.0.1", XForwardedHost: "shop.example.com", XForwardedProt: "http"}, e); diff != "" {
		t.Errorf("echo (-want +got):\n%s", diff)
	}

	// Without a default backend, what matches nothing gets a 404.
	w.ingresses = w.ingresses[:1]
	p.Update(w.table(t))
	if code, body, _ := get(t, c, "http://other.test/elsewhere"); code != http.StatusNotFound {
		t.Errorf("unmatched: %d %s, want 404", code, body)
	}
}

// TestForwardedHeaders checks X-Forwarded-* over HTTP and HTTPS, and that
// what a client sends in them is dropped.
func TestForwardedHeaders(t *testing.T) {
	b := newBackend(t, "b")
	w := world{
		ingresses: []*networkingv1.Ingress{withAnnotation(withTLS(ingress("i", "a.example.com Prefix / b"), "cert", "a.example.com"), routing.AnnotationSSLRedirect, "false")},
		services:  map[string][]string{"b": {b.addr()}},
		secrets:   []*corev1.Secret{tlsSecret(t, "cert", "a.example.com")},
	}
	p := startProxy(t, Config{}, w.table(t))
	for _, tc := range []struct {
		url, proto string
	}{
		{"http://a.example.com/x", "http"},
		{"https://a.example.com/x", "https"},
	} {
		req, _ := http.NewRequest("GET", tc.url, nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.Header.Set("X-Forwarded-Host", "evil.test")
		req.Header.Set("X-Forwarded-Proto", "gopher")
		resp, err := p.client(false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e echo
		decodeJSON(t, resp, &e)
		want := echo{Backend: "b", Host: "a.example.com", Path: "/x", XForwardedFor: "127.0.0.1", XForwardedHost: "a.example.com", XForwardedProt: tc.proto}
		if diff := cmp.Diff(want, e); diff != "" {
			t.Errorf("%s: echo (-want +got):\n%s", tc.url, diff)
		}
	}
}

// TestRetryOnRefusedConnection: an endpoint that refuses connections costs
// a retry on the next one, requests with a body included, and no request
// fails.
func TestRetryOnRefusedConnection(t *testing.T) {
	good := newBackend(t, "good")
	reg := prometheus.NewRegistry()
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix / svc")},
		services:  map[string][]string{"svc": {closedAddr(t), good.addr(), closedAddr(t)}},
	}
	p := startProxy(t, Config{Registerer: reg}, w.table(t))
	c := p.client(false)
	for i := range 12 {
		if i%2 == 0 {
			if e := getEcho(t, c, "http://a.example.com/"); e.Backend != "good" {
				t.Fatalf("answered by %q", e.Backend)
			}
			continue
		}
		resp, err := c.Post("http://a.example.com/post", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		var e echo
		decodeJSON(t, resp, &e)
		if e.Body != "payload" {
			t.Errorf("POST body arrived as %q", e.Body)
		}
	}
	if got := good.hits.Load(); got != 12 {
		t.Errorf("good backend got %d requests, want 12", got)
	}
	if n := testutil.ToFloat64(p.metrics.retries); n < 8 {
		t.Errorf("retries = %v, want at least 8 (two of three endpoints refuse)", n)
	}
}

// TestNoRetryAfterSending: an endpoint that takes the request and drops the
// connection is not retried elsewhere: the client gets a 502 and the
// request reaches one backend only.
func TestNoRetryAfterSending(t *testing.T) {
	good := newBackend(t, "good")
	var dropped atomic.Int64
	dropping := serveRaw(t, func(conn net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		dropped.Add(1)
	})
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix / svc")},
		services:  map[string][]string{"svc": {dropping, good.addr()}},
	}
	p := startProxy(t, Config{}, w.table(t))
	c := p.client(false)
	var ok, bad int64
	for range 10 {
		resp, err := c.Post("http://a.example.com/", "text/plain", strings.NewReader("once"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusBadGateway:
			bad++
		default:
			t.Errorf("status %d", resp.StatusCode)
		}
	}
	if ok != good.hits.Load() || bad != dropped.Load() || ok == 0 || bad == 0 {
		t.Errorf("200s %d, good backend %d; 502s %d, dropping backend %d: want each pair equal and none zero", ok, good.hits.Load(), bad, dropped.Load())
	}
}

// TestUnavailable checks the 503s: no ready endpoint, and a backend that does
// not exist.
func TestUnavailable(t *testing.T) {
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix /empty empty", "a.example.com Prefix /missing missing")},
		services:  map[string][]string{"empty": nil},
	}
	p := startProxy(t, Config{}, w.table(t))
	c := p.client(false)
	for _, tc := range []struct{ url, body string }{
		{"http://a.example.com/empty", "503 service unavailable: no ready endpoint for service default/empty port http\n"},
		{"http://a.example.com/missing", "503 service unavailable: service default/missing does not exist\n"},
	} {
		start := time.Now()
		code, body, _ := get(t, c, tc.url)
		if code != http.StatusServiceUnavailable || body != tc.body {
			t.Errorf("%s: %d %q, want 503 %q", tc.url, code, body, tc.body)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v: a 503 must come at once", tc.url, d)
		}
	}
}

// TestTLSAndHTTP2 fetches over TLS with HTTP/1.1 and HTTP/2 clients.
func TestTLSAndHTTP2(t *testing.T) {
	b := newBackend(t, "b")
	w := world{
		ingresses: []*networkingv1.Ingress{withTLS(ingress("i", "a.example.com Prefix / b"), "cert", "a.example.com")},
		services:  map[string][]string{"b": {b.addr()}},
		secrets:   []*corev1.Secret{tlsSecret(t, "cert", "a.example.com")},
	}
	p := startProxy(t, Config{}, w.table(t))
	for _, tc := range []struct {
		h2    bool
		proto string
	}{{false, "HTTP/1.1"}, {true, "HTTP/2.0"}} {
		resp, err := p.client(tc.h2).Get("https://a.example.com/x")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Proto != tc.proto {
			t.Errorf("proto %s, want %s", resp.Proto, tc.proto)
		}
		var e echo
		decodeJSON(t, resp, &e)
		if e.Backend != "b" || e.XForwardedProt != "https" || e.Host != "a.example.com" {
			t.Errorf("%s: echo %+v", tc.proto, e)
		}
	}
}

// TestSNI checks that the certificate follows the server name, wildcards
// included, and what happens without one.
func TestSNI(t *testing.T) {
	b := newBackend(t, "b")
	a := tlsSecret(t, "a", "a.example.com")
	wild := tlsSecret(t, "wild", "*.b.example.com")
	w := world{
		ingresses: []*networkingv1.Ingress{
			withTLS(withTLS(ingress("i", "a.example.com Prefix / b", "*.b.example.com Prefix / b"), "a", "a.example.com"), "wild", "*.b.example.com"),
		},
		services: map[string][]string{"b": {b.addr()}},
		secrets:  []*corev1.Secret{a, wild},
	}
	p := startProxy(t, Config{}, w.table(t))
	serialA, serialWild := serialOfSecret(t, a), serialOfSecret(t, wild)
	for _, tc := range []struct{ name, want string }{
		{"a.example.com", serialA},
		{"x.b.example.com", serialWild},
		{"y.b.example.com", serialWild},
	} {
		got, err := p.serialOf(t, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("%s: serial %s, %v; want %s", tc.name, got, err, tc.want)
		}
	}
	if _, err := p.serialOf(t, "nothing.example.com"); err == nil {
		t.Errorf("a server name without certificate got one")
	}
	// HTTP/2 over the wildcard certificate.
	resp, err := p.client(true).Get("https://x.b.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" {
		t.Errorf("proto %s", resp.Proto)
	}

	// A fallback certificate serves the names the table has none for.
	fc, fk := certPEM(t, "fallback.test")
	fallback, err := tls.X509KeyPair(fc, fk)
	if err != nil {
		t.Fatal(err)
	}
	p2 := startProxy(t, Config{FallbackCertificate: &fallback}, w.table(t))
	c, err := tls.Dial("tcp", p2.httpsAddr, &tls.Config{ServerName: "nothing.example.com", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].DNSNames; !cmp.Equal(got, []string{"fallback.test"}) {
		t.Errorf("fallback certificate names %v", got)
	}
}

// TestRedirect: hosts with a certificate redirect HTTP to HTTPS with 308,
// unless their Ingress opts out.
func TestRedirect(t *testing.T) {
	b := newBackend(t, "b")
	w := world{
		ingresses: []*networkingv1.Ingress{
			withTLS(ingress("secure", "a.example.com Prefix / b"), "cert", "a.example.com"),
			withAnnotation(ingress("plain", "a.example.com Prefix /plain b"), routing.AnnotationSSLRedirect, "false"),
			withAnnotation(ingress("plain-nginx", "a.example.com Prefix /nginx b"), routing.AnnotationNginxSSLRedirect, "false"),
			ingress("nocert", "c.example.com Prefix / b"),
		},
		services: map[string][]string{"b": {b.addr()}},
		secrets:  []*corev1.Secret{tlsSecret(t, "cert", "a.example.com")},
	}
	p := startProxy(t, Config{}, w.table(t))
	c := p.client(false)
	_, port, _ := net.SplitHostPort(p.httpsAddr)
	code, _, h := get(t, c, "http://a.example.com/some/path?q=1")
	if want := "https://a.example.com:" + port + "/some/path?q=1"; code != http.StatusPermanentRedirect || h.Get("Location") != want {
		t.Errorf("redirect: %d %q, want 308 %q", code, h.Get("Location"), want)
	}
	for _, u := range []string{"http://a.example.com/plain", "http://a.example.com/nginx/x", "http://c.example.com/", "https://a.example.com/"} {
		if e := getEcho(t, c, u); e.Backend != "b" {
			t.Errorf("%s: %+v", u, e)
		}
	}

	// On port 443 the Location has no port.
	s, err := New(Config{HTTPSPort: 443})
	if err != nil {
		t.Fatal(err)
	}
	s.Update(w.table(t))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "http://a.example.com:80/x", nil))
	if got := rec.Header().Get("Location"); rec.Code != http.StatusPermanentRedirect || got != "https://a.example.com/x" {
		t.Errorf("redirect on 443: %d %q", rec.Code, got)
	}
}

// TestWebSocket echoes messages through the proxy.
func TestWebSocket(t *testing.T) {
	up := websocket.Upgrader{}
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(ws.Close)
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "ws.example.com Prefix /ws ws")},
		services:  map[string][]string{"ws": {ws.Listener.Addr().String()}},
	}
	reg := prometheus.NewRegistry()
	p := startProxy(t, Config{Registerer: reg}, w.table(t))
	d := websocket.Dialer{NetDial: func(network, _ string) (net.Conn, error) { return net.Dial(network, p.httpAddr) }}
	conn, resp, err := d.Dial("ws://ws.example.com/ws/chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("status %d", resp.StatusCode)
	}
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+msg {
			t.Errorf("got %q", got)
		}
	}
	conn.Close()
	// The upgrade counts as a 1xx once the connection ends.
	waitFor(t, "the upgraded request to be counted", func() bool {
		return testutil.ToFloat64(p.state.Load().routes[p.Table().Routes()[0]].byClass[1]) == 1
	})
}

// TestStreaming: a streamed response arrives piece by piece, each before
// the backend writes the next.
func TestStreaming(t *testing.T) {
	next := make(chan struct{})
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(sse.Close)
	t.Cleanup(func() { close(next) })
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "s.example.com Prefix / sse")},
		services:  map[string][]string{"sse": {sse.Listener.Addr().String()}},
	}
	p := startProxy(t, Config{}, w.table(t))
	for _, h2 := range []bool{false, true} {
		url := "http://s.example.com/events"
		if h2 {
			// Over HTTP/2 the stream is a flow of DATA frames.
			w.ingresses[0] = withTLS(w.ingresses[0], "cert", "s.example.com")
			w.secrets = []*corev1.Secret{tlsSecret(t, "cert", "s.example.com")}
			p.Update(w.table(t))
			url = "https://s.example.com/events"
		}
		resp, err := p.client(h2).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(resp.Body)
		for i := range 3 {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("h2=%v: event %d: %v", h2, i, err)
			}
			if want := fmt.Sprintf("data: event %d\n", i); line != want {
				t.Errorf("h2=%v: got %q, want %q", h2, line, want)
			}
			r.ReadString('\n')
			next <- struct{}{} // only now does the backend write the next event
		}
		resp.Body.Close()
	}
}

// TestCertificateRotation swaps the certificate while a client keeps making
// new connections: no handshake fails, and new connections see the new
// certificate at once.
func TestCertificateRotation(t *testing.T) {
	b := newBackend(t, "b")
	old, cur := tlsSecret(t, "cert", "a.example.com"), tlsSecret(t, "cert", "a.example.com")
	w := world{
		ingresses: []*networkingv1.Ingress{withTLS(ingress("i", "a.example.com Prefix / b"), "cert", "a.example.com")},
		services:  map[string][]string{"b": {b.addr()}},
		secrets:   []*corev1.Secret{old},
	}
	p := startProxy(t, Config{}, w.table(t))
	oldSerial, newSerial := serialOfSecret(t, old), serialOfSecret(t, cur)

	stop := make(chan struct{})
	var failures, handshakes, sawNew atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := p.serialOf(t, "a.example.com")
				handshakes.Add(1)
				switch {
				case err != nil:
					failures.Add(1)
					t.Errorf("handshake: %v", err)
				case s == newSerial:
					sawNew.Add(1)
				case s != oldSerial:
					t.Errorf("unknown certificate serial %s", s)
				}
			}
		})
	}
	waitFor(t, "handshakes with the old certificate", func() bool { return handshakes.Load() >= 5 })
	w.secrets = []*corev1.Secret{cur}
	p.Update(w.table(t))
	// The very next connection sees the new certificate.
	if s, err := p.serialOf(t, "a.example.com"); err != nil || s != newSerial {
		t.Errorf("right after Update: serial %s, %v; want the new %s", s, err, newSerial)
	}
	after := handshakes.Load()
	waitFor(t, "handshakes with the new certificate", func() bool { return handshakes.Load() >= after+5 })
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || sawNew.Load() < 5 {
		t.Errorf("%d handshakes, %d failed, %d with the new certificate", handshakes.Load(), failures.Load(), sawNew.Load())
	}
	// And HTTPS requests work with it.
	if e := getEcho(t, p.client(true), "https://a.example.com/"); e.Backend != "b" {
		t.Errorf("echo %+v", e)
	}
}

// TestUnreadyEndpoints: once a table without an endpoint arrives, no request
// reaches it, even over kept-alive client connections.
func TestUnreadyEndpoints(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "x.example.com Prefix / svc")},
		services:  map[string][]string{"svc": {a.addr(), b.addr()}},
	}
	p := startProxy(t, Config{}, w.table(t))
	c := p.client(false)
	for range 10 {
		getEcho(t, c, "http://x.example.com/")
	}
	if a.hits.Load() != 5 || b.hits.Load() != 5 {
		t.Errorf("round robin: a %d, b %d; want 5 each", a.hits.Load(), b.hits.Load())
	}
	w.services["svc"] = []string{b.addr()}
	p.Update(w.table(t))
	before := a.hits.Load()
	for range 10 {
		if e := getEcho(t, c, "http://x.example.com/"); e.Backend != "b" {
			t.Errorf("answered by %s after it went unready", e.Backend)
		}
	}
	if a.hits.Load() != before {
		t.Errorf("a got %d requests after it went unready", a.hits.Load()-before)
	}
}

// TestMetricsAndAccessLog checks the counters, the histogram and the log
// lines of a few requests, and that a route's series go with the route.
func TestMetricsAndAccessLog(t *testing.T) {
	b := newBackend(t, "b")
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix /ok b", "a.example.com Prefix /none none")},
		services:  map[string][]string{"b": {b.addr()}, "none": nil},
	}
	reg := prometheus.NewRegistry()
	var log syncBuffer
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("", -7*3600))
	p := startProxy(t, Config{Registerer: reg, AccessLog: &log, Now: func() time.Time { return now }}, w.table(t))
	c := p.client(false)
	getEcho(t, c, "http://a.example.com/ok")
	getEcho(t, c, "http://a.example.com/ok/2")
	get(t, c, "http://a.example.com/none")
	req, _ := http.NewRequest("GET", "http://nothing.test/x?q=\"1\"", nil)
	req.Header.Set("User-Agent", "test \"agent\"")
	req.Header.Set("Referer", "http://ref.test/")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	want := `
# HELP keelson_ingress_requests_total Requests the Ingress proxy answered, by route and status code class (2xx, 3xx, 4xx, 5xx; 1xx for upgrades).
# TYPE keelson_ingress_requests_total counter
keelson_ingress_requests_total{code="1xx",host="",ingress="",path="",path_type="",service=""} 0
keelson_ingress_requests_total{code="2xx",host="",ingress="",path="",path_type="",service=""} 0
keelson_ingress_requests_total{code="3xx",host="",ingress="",path="",path_type="",service=""} 0
keelson_ingress_requests_total{code="4xx",host="",ingress="",path="",path_type="",service=""} 1
keelson_ingress_requests_total{code="5xx",host="",ingress="",path="",path_type="",service=""} 0
keelson_ingress_requests_total{code="1xx",host="a.example.com",ingress="default/i",path="/none",path_type="Prefix",service="default/none:http"} 0
keelson_ingress_requests_total{code="2xx",host="a.example.com",ingress="default/i",path="/none",path_type="Prefix",service="default/none:http"} 0
keelson_ingress_requests_total{code="3xx",host="a.example.com",ingress="default/i",path="/none",path_type="Prefix",service="default/none:http"} 0
keelson_ingress_requests_total{code="4xx",host="a.example.com",ingress="default/i",path="/none",path_type="Prefix",service="default/none:http"} 0
keelson_ingress_requests_total{code="5xx",host="a.example.com",ingress="default/i",path="/none",path_type="Prefix",service="default/none:http"} 1
keelson_ingress_requests_total{code="1xx",host="a.example.com",ingress="default/i",path="/ok",path_type="Prefix",service="default/b:http"} 0
keelson_ingress_requests_total{code="2xx",host="a.example.com",ingress="default/i",path="/ok",path_type="Prefix",service="default/b:http"} 2
keelson_ingress_requests_total{code="3xx",host="a.example.com",ingress="default/i",path="/ok",path_type="Prefix",service="default/b:http"} 0
keelson_ingress_requests_total{code="4xx",host="a.example.com",ingress="default/i",path="/ok",path_type="Prefix",service="default/b:http"} 0
keelson_ingress_requests_total{code="5xx",host="a.example.com",ingress="default/i",path="/ok",path_type="Prefix",service="default/b:http"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keelson_ingress_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "keelson_ingress_request_duration_seconds"); n != 3 {
		t.Errorf("%d latency histograms, want 3", n)
	}

	wantLog := `127.0.0.1 - - [04/Mar/2026:05:06:07 -0700] "GET /ok HTTP/1.1" 200 ` + fmt.Sprint(len(echoJSON(t, "b", "/ok"))) + ` "-" "Go-http-client/1.1"
127.0.0.1 - - [04/Mar/2026:05:06:07 -0700] "GET /ok/2 HTTP/1.1" 200 ` + fmt.Sprint(len(echoJSON(t, "b", "/ok/2"))) + ` "-" "Go-http-client/1.1"
127.0.0.1 - - [04/Mar/2026:05:06:07 -0700] "GET /none HTTP/1.1" 503 78 "-" "Go-http-client/1.1"
127.0.0.1 - - [04/Mar/2026:05:06:07 -0700] "GET /x?q=\"1\" HTTP/1.1" 404 47 "http://ref.test/" "test \"agent\""
`
	if diff := cmp.Diff(wantLog, log.String()); diff != "" {
		t.Errorf("access log (-want +got):\n%s", diff)
	}

	// A table without the /none route drops its series.
	w.ingresses = []*networkingv1.Ingress{ingress("i", "a.example.com Prefix /ok b")}
	p.Update(w.table(t))
	if n := testutil.CollectAndCount(reg, "keelson_ingress_requests_total"); n != 10 {
		t.Errorf("%d request series after the route went, want 10", n)
	}
	if n := testutil.CollectAndCount(reg, "keelson_ingress_request_duration_seconds"); n != 2 {
		t.Errorf("%d latency histograms after the route went, want 2", n)
	}
}

// echoJSON is the body a test backend answers a plain GET with.
func echoJSON(t *testing.T, backend, path string) string {
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(echo{Backend: backend, Host: "a.example.com", Path: path, XForwardedFor: "127.0.0.1", XForwardedHost: "a.example.com", XForwardedProt: "http"})
	return b.String()
}

// TestCloseEndsEverything closes the proxy with a WebSocket open and a
// streamed response under way: Close returns, Serve returns, and every
// goroutine the proxy started has ended.
func TestCloseEndsEverything(t *testing.T) {
	up := websocket.Upgrader{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}
		if r.URL.Path == "/done" {
			io.WriteString(w, "done")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer backend.Close()
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix / b")},
		services:  map[string][]string{"b": {backend.Listener.Addr().String()}},
	}
	tab := w.table(t)
	// fasthttp starts one goroutine for the whole process (the clock of the
	// Date header) at its first connection: a proxy served and closed
	// before the count starts it.
	warm := startProxy(t, Config{}, tab)
	if code, _, _ := get(t, warm.client(false), "http://a.example.com/done"); code != http.StatusOK {
		t.Fatalf("warm-up: %d", code)
	}
	warm.stop(t)
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()

	httpLn, _ := net.Listen("tcp", "127.0.0.1:0")
	httpsLn, _ := net.Listen("tcp", "127.0.0.1:0")
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.Update(tab)
	served := make(chan error, 1)
	go func() { served <- s.Serve(httpLn, httpsLn) }()
	p := &testProxy{Server: s, httpAddr: httpLn.Addr().String(), httpsAddr: httpsLn.Addr().String()}

	d := websocket.Dialer{NetDial: func(network, _ string) (net.Conn, error) { return net.Dial(network, p.httpAddr) }}
	ws, _, err := d.Dial("ws://a.example.com/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := p.client(false)
	resp, err := c.Get("http://a.example.com/events")
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if line != "data: first\n" {
		t.Fatalf("stream: %q", line)
	}
	// A finished request leaves idle connections from the client and to the
	// backend.
	if code, body, _ := get(t, c, "http://a.example.com/done"); code != http.StatusOK || body != "done" {
		t.Fatalf("GET /done: %d %q", code, body)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve: %v", err)
	}
	// The client sees its connections end.
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil || isTimeout(err) {
		t.Errorf("WebSocket still open after Close: %v", err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Logf("stream ended cleanly after Close")
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	ws.Close()
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines left after Close (%d, %d before):\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
	// Serve on a closed Server refuses.
	if err := s.Serve(nil, nil); err != ErrServing {
		t.Errorf("Serve after Close: %v", err)
	}
}

// TestShutdownWaitsForRequests: Shutdown lets a request under way finish.
func TestShutdownWaitsForRequests(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "done")
	}))
	defer slow.Close()
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix / slow")},
		services:  map[string][]string{"slow": {slow.Listener.Addr().String()}},
	}
	p := startProxy(t, Config{}, w.table(t))
	c := p.client(false)
	got := make(chan string, 1)
	go func() {
		resp, err := c.Get("http://a.example.com/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if b := <-got; b != "done" {
		t.Errorf("request during Shutdown: %q", b)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer collects output that is read while it is written.
type syncBuffer = syncbuf.Buffer

// failingListener fails its first Accept.
type failingListener struct{ net.Listener }

func (failingListener) Accept() (net.Conn, error) { return nil, errors.New("listener broke") }

// TestServeListenerFailure: a listener that fails stops Serve, which says
// why; Close ends the rest.
func TestServeListenerFailure(t *testing.T) {
	ok, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ok, failingListener{bad}) }()
	select {
	case err := <-done:
		if err == nil || err.Error() != "listener broke" {
			t.Errorf("Serve: %v, want the listener's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return when a listener failed")
	}
	if _, err := net.Dial("tcp", ok.Addr().String()); err == nil {
		t.Errorf("the other listener still accepts")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestRequestTargetAsSent: the endpoint gets the request target exactly as
// the client sent it (no path cleaning, no re-encoding), and routing sees
// the decoded path.
func TestRequestTargetAsSent(t *testing.T) {
	got := make(chan string, 1)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.RequestURI
	}))
	t.Cleanup(b.Close)
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix /a:b b")},
		services:  map[string][]string{"b": {b.Listener.Addr().String()}},
	}
	p := startProxy(t, Config{}, w.table(t))
	for _, target := range []string{"/a%3Ab/c//d/../e?x=%2F&y", "/a:b//%7e?q=%zz"} {
		conn, err := net.Dial("tcp", p.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n", target)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", target, resp.Status)
		}
		if uri := <-got; uri != target {
			t.Errorf("endpoint got %q, client sent %q", uri, target)
		}
	}
}

// TestBodies: answers small and large, of known and unknown length, with
// and without a Content-Type, and to HEAD, arrive as the endpoint gave them.
func TestBodies(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB: streamed, not held
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
		case "/chunked":
			for i := 0; i < len(big); i += 50000 {
				w.Write(big[i:min(i+50000, len(big))])
				w.(http.Flusher).Flush()
			}
		case "/untyped":
			w.Header()["Content-Type"] = nil // net/http would sniff one
			io.WriteString(w, "no type")
		}
	}))
	t.Cleanup(b.Close)
	w := world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix / b")},
		services:  map[string][]string{"b": {b.Listener.Addr().String()}},
	}
	var log syncBuffer
	p := startProxy(t, Config{AccessLog: &log}, w.table(t))
	c := p.client(false)
	for _, path := range []string{"/big", "/chunked"} {
		for range 2 { // the second on the kept-alive endpoint connection
			code, body, _ := get(t, c, "http://a.example.com"+path)
			if code != http.StatusOK || body != string(big) {
				t.Errorf("%s: %d, %d bytes, want 200 and %d bytes", path, code, len(body), len(big))
			}
		}
	}
	code, body, h := get(t, c, "http://a.example.com/untyped")
	if code != http.StatusOK || body != "no type" || h.Get("Content-Type") != "" {
		t.Errorf("/untyped: %d %q, Content-Type %q", code, body, h.Get("Content-Type"))
	}
	req, _ := http.NewRequest("HEAD", "http://a.example.com/big", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(big)) {
		t.Errorf("HEAD /big: %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	waitFor(t, "the streamed answers to be logged", func() bool {
		return strings.Count(log.String(), `"GET /big HTTP/1.1" 200 `+strconv.Itoa(len(big))) == 2
	})
}
