package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func TestServerAnswersClusterNames(t *testing.T) {
	s := startServer(t, Config{})
	s.Update(testServices(), testPods())

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			resp := query(t, network, addr(s), "web.default.svc.cluster.local.", dns.TypeA, 0)
			if !resp.Authoritative || !resp.RecursionAvailable || resp.Rcode != dns.RcodeSuccess {
				t.Errorf("flags: aa=%v ra=%v rcode=%s", resp.Authoritative, resp.RecursionAvailable, dns.RcodeToString[resp.Rcode])
			}
			if diff := cmp.Diff([]string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}, answers(resp)); diff != "" {
				t.Errorf("A (-want +got):\n%s", diff)
			}

			resp = query(t, network, addr(s), "google.com.default.svc.cluster.local.", dns.TypeA, 1232)
			if resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA {
				t.Errorf("search path expansion: want NXDOMAIN with SOA, got\n%v", resp)
			}
			if resp.IsEdns0() == nil {
				t.Error("no OPT record in the answer to an EDNS(0) query")
			}

			resp = query(t, network, addr(s), "web.default.svc.cluster.local.", dns.TypeAAAA, 0)
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 || len(resp.Ns) != 1 {
				t.Errorf("AAAA: want NOERROR, no answer, SOA; got\n%v", resp)
			}

			resp = query(t, network, addr(s), "_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, 0)
			if len(resp.Answer) != 2 || len(resp.Extra) != 2 {
				t.Errorf("headless SRV: want 2 records and 2 addresses, got\n%v", resp)
			}

			resp = query(t, network, addr(s), "10.0.96.10.in-addr.arpa.", dns.TypePTR, 0)
			if diff := cmp.Diff([]string{"10.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."}, answers(resp)); diff != "" {
				t.Errorf("PTR (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServerUpdateReplacesView(t *testing.T) {
	s := startServer(t, Config{Domain: "Example.Internal."})
	const name = "api.prod.svc.example.internal."
	if resp := query(t, "udp", addr(s), name, dns.TypeA, 0); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("before Update: want NXDOMAIN, got %s", dns.RcodeToString[resp.Rcode])
	}
	for _, ip := range []string{"10.96.7.1", "10.96.7.2"} {
		s.Update([]Service{{Namespace: "prod", Name: "api", ClusterIP: netip.MustParseAddr(ip)}}, nil)
		resp := query(t, "udp", addr(s), name, dns.TypeA, 0)
		if diff := cmp.Diff([]string{name + " 5 IN A " + ip}, answers(resp)); diff != "" {
			t.Errorf("after Update to %s (-want +got):\n%s", ip, diff)
		}
	}
	s.Update(nil, nil)
	if resp := query(t, "udp", addr(s), name, dns.TypeA, 0); resp.Rcode != dns.RcodeNameError {
		t.Errorf("after removal: want NXDOMAIN, got %s", dns.RcodeToString[resp.Rcode])
	}
}

// TestServerQueriesDuringUpdates runs queries and updates at once; with
// -race it checks that the view is swapped safely.
func TestServerQueriesDuringUpdates(t *testing.T) {
	s := startServer(t, Config{})
	views := [][]Service{
		{{Namespace: "ns", Name: "a", ClusterIP: netip.MustParseAddr("10.96.0.1")}},
		{{Namespace: "ns", Name: "a", ClusterIP: netip.MustParseAddr("10.96.0.2")}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			s.Update(views[i%2], nil)
		}
	})
	for range 200 {
		resp := query(t, "udp", addr(s), "a.ns.svc.cluster.local.", dns.TypeA, 0)
		if len(resp.Answer) > 1 {
			t.Errorf("answer mixes views: %v", resp.Answer)
		}
	}
	cancel()
	wg.Wait()
}

func TestServerForwardsAndCaches(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.1"))
	s := startServer(t, Config{Upstreams: []string{up.addr}})

	for i := range 3 {
		resp := query(t, "udp", addr(s), "www.Example.com.", dns.TypeA, 0)
		if resp.Authoritative || !resp.RecursionAvailable || resp.Rcode != dns.RcodeSuccess {
			t.Errorf("query %d flags: aa=%v ra=%v rcode=%s", i, resp.Authoritative, resp.RecursionAvailable, dns.RcodeToString[resp.Rcode])
		}
		if resp.Question[0].Name != "www.Example.com." {
			t.Errorf("query %d: question %q, want the client's case", i, resp.Question[0].Name)
		}
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
			t.Errorf("query %d: answer %v", i, resp.Answer)
		}
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("upstream asked %d times, want once (cached)", n)
	}

	// Negative answers are cached too.
	for range 2 {
		resp := query(t, "tcp", addr(s), "nx.example.com.", dns.TypeA, 0)
		if resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 1 {
			t.Errorf("NXDOMAIN: got\n%v", resp)
		}
	}
	if n := up.queries.Load(); n != 2 {
		t.Errorf("upstream asked %d times, want twice", n)
	}
}

func TestServerCacheHonorsTTL(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.1")) // TTL 60
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := startServer(t, Config{Upstreams: []string{up.addr}, Now: clock})
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	query(t, "udp", addr(s), "example.com.", dns.TypeA, 0)
	advance(45 * time.Second)
	resp := query(t, "udp", addr(s), "example.com.", dns.TypeA, 0)
	if got := resp.Answer[0].Header().Ttl; got != 15 {
		t.Errorf("TTL after 45 s in the cache = %d, want 15", got)
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("upstream asked %d times, want once", n)
	}
	advance(15 * time.Second)
	query(t, "udp", addr(s), "example.com.", dns.TypeA, 0)
	if n := up.queries.Load(); n != 2 {
		t.Errorf("upstream asked %d times after the TTL, want twice", n)
	}
}

func TestServerRetriesTruncatedOverTCP(t *testing.T) {
	const n = 100
	up := startUpstream(t, func(network string, req *dns.Msg) *dns.Msg {
		m := new(dns.Msg).SetReply(req)
		if network == "udp" {
			m.Truncated = true
			return m
		}
		for i := range n {
			m.Answer = append(m.Answer, mustParse(fmt.Sprintf("%s 60 IN A 192.0.2.%d", req.Question[0].Name, i+1)))
		}
		return m
	})
	s := startServer(t, Config{Upstreams: []string{up.addr}})

	resp := query(t, "tcp", addr(s), "big.example.com.", dns.TypeA, 0)
	if len(resp.Answer) != n || resp.Truncated {
		t.Errorf("over TCP: %d records (tc=%v), want %d", len(resp.Answer), resp.Truncated, n)
	}
	// The same answer to a UDP client without EDNS(0) is cut to 512 bytes.
	resp = query(t, "udp", addr(s), "big.example.com.", dns.TypeA, 0)
	if !resp.Truncated || len(resp.Answer) >= n || wireLen(t, resp) > dns.MinMsgSize {
		t.Errorf("over UDP: %d records, tc=%v, %d bytes; want truncated to 512 bytes", len(resp.Answer), resp.Truncated, wireLen(t, resp))
	}
}

func TestServerTruncatesLargeHeadlessOverUDP(t *testing.T) {
	s := startServer(t, Config{})
	svc := Service{Namespace: "default", Name: "big"}
	for i := range 200 {
		svc.Endpoints = append(svc.Endpoints, Endpoint{IP: netip.AddrFrom4([4]byte{10, 244, byte(i / 100), byte(i%100 + 1)}), Ready: true})
	}
	s.Update([]Service{svc}, nil)
	const name = "big.default.svc.cluster.local."

	tests := []struct {
		network   string
		udpSize   uint16
		truncated bool
	}{
		{"udp", 0, true},
		{"udp", 1232, true},
		{"udp", 4096, false},
		{"tcp", 0, false},
	}
	for _, tt := range tests {
		resp := query(t, tt.network, addr(s), name, dns.TypeA, tt.udpSize)
		if tt.truncated {
			limit := max(int(tt.udpSize), dns.MinMsgSize)
			if !resp.Truncated || wireLen(t, resp) > limit {
				t.Errorf("%s size %d: tc=%v, %d bytes; want tc and at most %d", tt.network, tt.udpSize, resp.Truncated, wireLen(t, resp), limit)
			}
			continue
		}
		if resp.Truncated || len(resp.Answer) != 200 {
			t.Errorf("%s size %d: tc=%v, %d records; want all 200", tt.network, tt.udpSize, resp.Truncated, len(resp.Answer))
		}
	}
}

func TestServerShufflesAddresses(t *testing.T) {
	s := startServer(t, Config{})
	svc := Service{Namespace: "default", Name: "hl"}
	for i := range 8 {
		svc.Endpoints = append(svc.Endpoints, Endpoint{IP: netip.AddrFrom4([4]byte{10, 244, 0, byte(i + 1)}), Ready: true})
	}
	s.Update([]Service{svc}, nil)
	first := map[string]bool{}
	for range 50 {
		resp := query(t, "udp", addr(s), "hl.default.svc.cluster.local.", dns.TypeA, 0)
		if len(resp.Answer) != 8 {
			t.Fatalf("%d records, want 8", len(resp.Answer))
		}
		first[resp.Answer[0].(*dns.A).A.String()] = true
	}
	if len(first) < 2 {
		t.Errorf("the first address is always %v: answers are not shuffled", first)
	}
}

func TestServerExternalName(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.7"))
	s := startServer(t, Config{Upstreams: []string{up.addr}})
	s.Update([]Service{{Namespace: "default", Name: "ext", ExternalName: "db.example.com"}}, nil)

	resp := query(t, "udp", addr(s), "ext.default.svc.cluster.local.", dns.TypeA, 0)
	want := []string{
		"ext.default.svc.cluster.local. 5 IN CNAME db.example.com.",
		"db.example.com. 60 IN A 192.0.2.7",
	}
	if diff := cmp.Diff(want, answers(resp)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestServerUpstreamFailover(t *testing.T) {
	// A closed port: the kernel refuses at once.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	_ = dead.Close()
	failing := startUpstream(t, func(_ string, req *dns.Msg) *dns.Msg {
		return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	})
	good := startUpstream(t, answerA("192.0.2.9"))

	s := startServer(t, Config{Upstreams: []string{deadAddr, failing.addr, good.addr}})
	resp := query(t, "udp", addr(s), "example.com.", dns.TypeA, 0)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("want the good upstream's answer, got\n%v", resp)
	}
	if failing.queries.Load() != 1 {
		t.Errorf("failing upstream asked %d times, want once", failing.queries.Load())
	}
	// The next name goes straight to the upstream that answered last.
	query(t, "udp", addr(s), "example.org.", dns.TypeA, 0)
	if failing.queries.Load() != 1 || good.queries.Load() != 2 {
		t.Errorf("asked failing %d, good %d times; want 1 and 2", failing.queries.Load(), good.queries.Load())
	}
}

func TestServerAllUpstreamsFail(t *testing.T) {
	failing := startUpstream(t, func(_ string, req *dns.Msg) *dns.Msg {
		return new(dns.Msg).SetRcode(req, dns.RcodeRefused)
	})
	s := startServer(t, Config{Upstreams: []string{failing.addr}})
	if resp := query(t, "udp", addr(s), "example.com.", dns.TypeA, 0); resp.Rcode != dns.RcodeRefused {
		t.Errorf("rcode %s, want the upstream's REFUSED", dns.RcodeToString[resp.Rcode])
	}

	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	_ = dead.Close()
	s2 := startServer(t, Config{Upstreams: []string{deadAddr}})
	if resp := query(t, "udp", addr(s2), "example.com.", dns.TypeA, 0); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
}

// TestServerForwardsToResolvConf binds an upstream on port 53 of a loopback
// address, since resolv.conf names no port.
func TestServerForwardsToResolvConf(t *testing.T) {
	requireRoot(t, "binding port 53")
	// Port 53 of some 127.53.x.y address nobody else uses.
	var up *upstream
	for i := range 20 {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 53, byte(os.Getpid() % 250), byte(i + 2)}), 53)
		var err error
		if up, err = startUpstreamAt(t, a, answerA("192.0.2.53")); err == nil {
			break
		}
	}
	if up == nil {
		t.Fatal("no free port 53 on 127.53.x.y")
	}
	upAddr := netip.MustParseAddrPort(up.addr)

	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver "+upAddr.Addr().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Config{ResolvConf: path})
	resp := query(t, "udp", addr(s), "example.com.", dns.TypeA, 0)
	if len(resp.Answer) != 1 || up.queries.Load() != 1 {
		t.Errorf("want the answer of the resolv.conf's nameserver, got\n%v", resp)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no address", Config{}},
		{"address without port", Config{Addrs: []string{"10.88.0.1"}}},
		{"host name", Config{Addrs: []string{"localhost:53"}}},
		{"bad domain", Config{Addrs: []string{"127.0.0.1:53"}, Domain: "a..b"}},
		{"bad upstream", Config{Addrs: []string{"127.0.0.1:53"}, Upstreams: []string{"dns.google"}}},
		{"upstream is itself", Config{Addrs: []string{"127.0.0.1:53"}, Upstreams: []string{"127.0.0.1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestStartFailsCleanly(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	s, err := New(Config{Addrs: []string{"127.0.0.1:0", taken.Addr().String()}, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("Start on a taken address succeeded")
	}
	waitNoServerGoroutines(t)
	if err := s.Close(); err != nil {
		t.Errorf("Close after a failed Start: %v", err)
	}

	s = startServer(t, Config{})
	if err := s.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestServerListensOnEveryAddress(t *testing.T) {
	s := startServer(t, Config{Addrs: []string{"127.0.0.1:0", "127.0.0.2:0"}})
	s.Update(testServices(), nil)
	got := s.Addrs()
	if len(got) != 2 || got[0].Port() == 0 || got[1].Port() == 0 {
		t.Fatalf("Addrs() = %v", got)
	}
	for _, a := range got {
		for _, network := range []string{"udp", "tcp"} {
			resp := query(t, network, a.String(), "web.default.svc.cluster.local.", dns.TypeA, 0)
			if len(resp.Answer) != 1 {
				t.Errorf("%s %s: %v", network, a, resp)
			}
		}
	}
}

// TestCloseEndsGoroutines closes a server with an idle TCP client and a
// forward in flight to an upstream that never answers: Close must return at
// once and leave no goroutine behind.
func TestCloseEndsGoroutines(t *testing.T) {
	waitNoServerGoroutines(t) // nothing from earlier tests

	blackhole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blackhole.Close()
	asked := make(chan struct{}, 1)
	var bhWG sync.WaitGroup
	bhWG.Go(func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := blackhole.ReadFrom(buf); err != nil {
				return
			}
			select {
			case asked <- struct{}{}:
			default:
			}
		}
	})
	defer bhWG.Wait()
	defer blackhole.Close()

	s, err := New(Config{Addrs: []string{"127.0.0.1:0"}, Upstreams: []string{blackhole.LocalAddr().String()}, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Update(testServices(), nil)
	query(t, "udp", addr(s), "web.default.svc.cluster.local.", dns.TypeA, 0)
	query(t, "tcp", addr(s), "web.default.svc.cluster.local.", dns.TypeA, 0)

	idle, err := dns.Dial("tcp", addr(s))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	var client sync.WaitGroup
	client.Go(func() {
		m := new(dns.Msg).SetQuestion("example.com.", dns.TypeA)
		c := &dns.Client{Timeout: 5 * time.Second}
		_, _, _ = c.Exchange(m, addr(s)) // SERVFAIL or a timeout: either is fine
	})
	defer client.Wait()
	select {
	case <-asked:
	case <-time.After(5 * time.Second):
		t.Fatal("the forward never reached the upstream")
	}

	if len(serverGoroutines()) == 0 {
		t.Fatal("no server goroutine found while serving: serverGoroutines cannot see them")
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a forward in flight; want it cancelled", d)
	}
	if left := serverGoroutines(); len(left) > 0 {
		t.Errorf("%d goroutines left after Close returned:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

func TestForwarderBoundsQueriesInFlight(t *testing.T) {
	blackhole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	asked := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer blackhole.Close()
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := blackhole.ReadFrom(buf); err != nil {
				return
			}
			select {
			case asked <- struct{}{}:
			default:
			}
		}
	})

	f := newForwarder(10*time.Second, 1)
	servers := []string{blackhole.LocalAddr().String()}
	q := dns.Question{Name: "example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	wg.Go(func() {
		_, err := f.exchange(ctx, servers, q, false)
		first <- err
	})
	<-asked
	if _, err := f.exchange(context.Background(), servers, q, false); !errors.Is(err, errTooManyForwards) {
		t.Errorf("second query while one is in flight: %v, want errTooManyForwards", err)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled query: %v, want context.Canceled", err)
	}
	// The token is back.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := f.exchange(ctx2, servers, q, false); errors.Is(err, errTooManyForwards) {
		t.Errorf("query after the first ended: %v", err)
	}
}

func TestServerRefusesZoneTransfers(t *testing.T) {
	s := startServer(t, Config{})
	if resp := query(t, "tcp", addr(s), "cluster.local.", dns.TypeAXFR, 0); resp.Rcode != dns.RcodeRefused {
		t.Errorf("AXFR: %s, want REFUSED", dns.RcodeToString[resp.Rcode])
	}
}
