package ingress

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	networkingv1 "k8s.io/api/networking/v1"
)

// Edge cases of the HTTP/1.1 (fasthttp) path, each on a raw connection
// where the client matters.

// twoHosts routes a.example.com to the endpoint a and b.example.com to b.
func twoHosts(a, b string) world {
	return world{
		ingresses: []*networkingv1.Ingress{ingress("i", "a.example.com Prefix / svca", "b.example.com Prefix / svcb")},
		services:  map[string][]string{"svca": {a}, "svcb": {b}},
	}
}

// rawRequest sends req on a new connection to addr and returns all the
// proxy sent back until it closed the connection (or 5 s passed).
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, req)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v (got %q)", req, err, b)
	}
	return string(b)
}

// TestInterimAnswer: a 100 Continue, then the real answer half a second
// later, as an endpoint taking its time over an upload sends them.
func TestInterimAnswer(t *testing.T) {
	ep := serveRaw(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		time.Sleep(500 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	p := startProxy(t, Config{}, twoHosts(ep, ep).table(t))
	if code, body, _ := get(t, p.client(false), "http://a.example.com/"); code != http.StatusOK || body != "ok" {
		t.Errorf("got %d %q, want 200 \"ok\"", code, body)
	}
}

// TestConsumedBodyNotResent: a POST whose body went (in part) on a kept-alive
// connection the endpoint had closed is not sent again: the endpoint never
// gets a truncated body.
func TestConsumedBodyNotResent(t *testing.T) {
	const size = 4 << 20
	var mu sync.Mutex
	var bodies []int
	ep := serveRaw(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		n, _ := io.Copy(io.Discard, req.Body)
		if req.Method == http.MethodPost {
			mu.Lock()
			bodies = append(bodies, int(n), int(req.ContentLength))
			mu.Unlock()
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// and the connection closes, as an idle timeout racing the next request
	})
	p := startProxy(t, Config{}, twoHosts(ep, ep).table(t))
	c := p.client(false)
	for range 3 {
		get(t, c, "http://a.example.com/")
		time.Sleep(20 * time.Millisecond)
		resp, err := c.Post("http://a.example.com/upload", "application/octet-stream", strings.NewReader(strings.Repeat("x", size)))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < len(bodies); i += 2 {
		if bodies[i] != size || bodies[i+1] != size {
			t.Errorf("the endpoint got a POST with Content-Length %d and %d bytes, want %d", bodies[i+1], bodies[i], size)
		}
	}
}

// TestAbsoluteForm: a request whose target names its host is routed by
// that host, which the endpoint gets as Host.
func TestAbsoluteForm(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	p := startProxy(t, Config{}, twoHosts(a.addr(), b.addr()).table(t))
	out := rawRequest(t, p.httpAddr, "GET http://b.example.com/p?q=1 HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
	if !strings.Contains(out, `"Backend":"b","Host":"b.example.com","Path":"/p","Query":"q=1"`) {
		t.Errorf("answer:\n%s", out)
	}
}

// TestHTTP10Client: an HTTP/1.0 client gets an answer of unknown length
// whole, with its length, not chunked.
func TestHTTP10Client(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part1 ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
	}))
	t.Cleanup(b.Close)
	ep := b.Listener.Addr().String()
	p := startProxy(t, Config{}, twoHosts(ep, ep).table(t))
	out := rawRequest(t, p.httpAddr, "GET / HTTP/1.0\r\nHost: a.example.com\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("%v in %q", err, out)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "part1 part2" || resp.ContentLength != int64(len(body)) || strings.Contains(strings.ToLower(out), "chunked") {
		t.Errorf("answer to HTTP/1.0:\n%q", out)
	}
}

// TestHopByHopAndForwarded: whatever their case, the client's X-Forwarded-*
// are replaced and hop-by-hop headers (those Connection names too) stay on
// their hop, both ways.
func TestHopByHopAndForwarded(t *testing.T) {
	seen := make(chan http.Header, 1)
	ep := serveRaw(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		seen <- req.Header
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nkeep-alive: timeout=5\r\nConnection: keep-alive, X-Up-Hop\r\nX-Up-Hop: 1\r\nX-Kept: 1\r\n\r\nok")
	})
	p := startProxy(t, Config{}, twoHosts(ep, ep).table(t))
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.example.com\r\nx-forwarded-for: 6.6.6.6\r\nx-forwarded-proto: https\r\n"+
		"x-forwarded-host: evil\r\nproxy-authorization: secret\r\nkeep-alive: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: 1\r\n\r\n")
	h := <-seen
	for k, want := range map[string][]string{
		"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"a.example.com"}, "X-Kept": {"1"},
		"Proxy-Authorization": nil, "Keep-Alive": nil, "X-Hop": nil, "Connection": nil,
	} {
		if got := h.Values(k); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("endpoint got %s %q, want %q", k, got, want)
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, want := range map[string]string{"Keep-Alive": "", "X-Up-Hop": "", "X-Kept": "1"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("client got %s %q, want %q", k, got, want)
		}
	}
}

// TestUpgradedEndpointCloses: when the endpoint ends an upgraded
// connection, the client sees the end.
func TestUpgradedEndpointCloses(t *testing.T) {
	ep := serveRaw(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\nhello")
		time.Sleep(100 * time.Millisecond)
	})
	p := startProxy(t, Config{}, twoHosts(ep, ep).table(t))
	out := rawRequest(t, p.httpAddr, "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 101") || !strings.HasSuffix(out, "\r\n\r\nhello") {
		t.Errorf("client got %q", out)
	}
}

// TestCloseIsPrompt: Close does not wait for an endpoint that is slow to
// answer, a TLS client that never says hello, or an upgrade whose client
// went away before fasthttp could hand its connection over.
func TestCloseIsPrompt(t *testing.T) {
	up := websocket.Upgrader{}
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			time.Sleep(300 * time.Millisecond)
			if c, err := up.Upgrade(w, r, nil); err == nil {
				c.ReadMessage()
				c.Close()
			}
			return
		}
		if r.URL.Path == "/slow" {
			time.Sleep(2 * time.Second)
		}
		io.WriteString(w, "a")
	}))
	t.Cleanup(b.Close)
	ep := b.Listener.Addr().String()
	p := startProxy(t, Config{ResponseHeaderTimeout: 20 * time.Second}, twoHosts(ep, ep).table(t))

	go p.client(false).Get("http://a.example.com/slow")
	silent, err := net.Dial("tcp", p.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	pipelined, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(pipelined, "GET /a HTTP/1.1\r\nHost: a.example.com\r\n\r\n"+
		"GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	pipelined.(*net.TCPConn).SetLinger(0)
	pipelined.Close() // a reset before the 101
	time.Sleep(600 * time.Millisecond)

	start := time.Now()
	p.stop(t)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
}

// flakyListener fails its first Accept for want of file descriptors.
type flakyListener struct {
	net.Listener
	failed bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if !l.failed {
		l.failed = true
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptRetried: running out of file descriptors for a moment does not
// end Serve.
func TestAcceptRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := retryListener{&flakyListener{Listener: ln}, slog.New(slog.DiscardHandler)}
	defer l.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	c.Close()
	l.Close()
	if _, err := l.Accept(); err == nil || temporaryAcceptError(err) {
		t.Errorf("Accept on a closed listener: %v", err)
	}
}
