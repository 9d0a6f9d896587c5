package dns

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// requireRoot skips a test that needs root, except in CI where it fails.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("test needs root (%s); CI must run it as root", why)
	}
	t.Skipf("test needs root (%s)", why)
}

func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startServer starts a Server on 127.0.0.1 with a free port (unless cfg
// names addresses) and closes it at the end of the test.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{"127.0.0.1:0"}
	}
	if cfg.Log == nil {
		cfg.Log = testLogger(t)
	}
	if cfg.Upstreams == nil && cfg.ResolvConf == "" {
		// Never the machine's resolvers: a test that forwards names its upstream.
		cfg.ResolvConf = "/nonexistent/resolv.conf"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// addr is the server's first address, as host:port.
func addr(s *Server) string { return s.Addrs()[0].String() }

// upstream is a DNS server (UDP and TCP on one port) for the tests to forward to.
type upstream struct {
	addr    string
	queries atomic.Int64
}

// startUpstream serves handle on 127.0.0.1 until the end of the test. handle
// gets the transport ("udp" or "tcp") and the query, and returns the answer
// (nil: no answer at all).
func startUpstream(t testing.TB, handle func(network string, req *dns.Msg) *dns.Msg) *upstream {
	t.Helper()
	u, err := startUpstreamAt(t, netip.MustParseAddrPort("127.0.0.1:0"), handle)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// startUpstreamAt is startUpstream on the address ap (port 0: a free one).
func startUpstreamAt(t testing.TB, ap netip.AddrPort, handle func(network string, req *dns.Msg) *dns.Msg) (*upstream, error) {
	pc, ln, err := listenBoth(context.Background(), net.ListenConfig{}, ap)
	if err != nil {
		return nil, err
	}
	u := &upstream{addr: ln.Addr().String()}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		u.queries.Add(1)
		network := "tcp"
		if _, ok := w.LocalAddr().(*net.UDPAddr); ok {
			network = "udp"
		}
		if resp := handle(network, req); resp != nil {
			_ = w.WriteMsg(resp)
		}
	})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs after the Shutdowns (cleanups run last first)
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		ready := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(ready) }
		wg.Go(func() { _ = srv.ActivateAndServe() })
		<-ready
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u, nil
}

// answerA returns a handler answering every A query with ip (TTL 60), and
// NXDOMAIN for nxname.
func answerA(ip string) func(string, *dns.Msg) *dns.Msg {
	return func(_ string, req *dns.Msg) *dns.Msg {
		m := new(dns.Msg).SetReply(req)
		q := req.Question[0]
		if strings.HasPrefix(q.Name, "nx.") {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{mustParse("example.com. 300 IN SOA ns.example.com. h.example.com. 1 2 3 4 30")}
			return m
		}
		if q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{mustParse(q.Name + " 60 IN A " + ip)}
		}
		return m
	}
}

func mustParse(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err) // test fixtures only
	}
	return rr
}

// query asks name/qtype of the server at addr over network; udpSize > 0
// adds an EDNS(0) OPT record with that size.
func query(t testing.TB, network, addr, name string, qtype uint16, udpSize uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if udpSize > 0 {
		m.SetEdns0(udpSize, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s %s to %s: %v", network, name, dns.TypeToString[qtype], addr, err)
	}
	return resp
}

// answers writes the answer section as text, one record a line.
func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

// serverGoroutines returns the stacks of the goroutines run by a Server of
// this package (or by the miekg/dns servers it drives).
func serverGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if lines := strings.SplitN(g, "\n", 3); len(lines) > 1 && strings.HasPrefix(lines[1], "runtime.goexit1(") {
			continue // its function has returned; the runtime is putting it away
		}
		if strings.Contains(g, "github.com/miekg/dns.(*Server)") ||
			strings.Contains(g, "nodeagent/dns.(*Server).serveDNS") ||
			strings.Contains(g, "nodeagent/dns.exchangeOnce") {
			out = append(out, g)
		}
	}
	return out
}

// waitNoServerGoroutines fails the test if goroutines of a server are
// still there after a short while.
func waitNoServerGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := serverGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d server goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wireLen is the size of m as sent, compressed.
func wireLen(t testing.TB, m *dns.Msg) int {
	t.Helper()
	c := m.Copy()
	c.Compress = true
	b, err := c.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}
