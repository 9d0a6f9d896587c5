package ebpf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// The benchmarks take their samples inside one iteration and report
// percentiles: run them with -benchtime 1x (hack/bench.sh does).

// Latency is measured with blocking syscalls on a locked thread, so that
// Go's poller adds nothing to either side of a comparison.

func newSocket() (int, error) {
	return unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}

func sockaddr(a netip.AddrPort) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
}

// closeRST closes with a reset, leaving no TIME_WAIT behind.
func closeRST(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

// roundTrip writes req and reads as many bytes back.
func roundTrip(fd int, req, resp []byte) error {
	if _, err := unix.Write(fd, req); err != nil {
		return err
	}
	for got := 0; got < len(resp); {
		n, err := unix.Read(fd, resp[got:])
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		got += n
	}
	return nil
}

// connectRequest times a request on a new connection: connect, send 64
// bytes, read the echo.
func connectRequest(addr netip.AddrPort, req, resp []byte) (time.Duration, error) {
	fd, err := newSocket()
	if err != nil {
		return 0, err
	}
	defer closeRST(fd)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	start := time.Now()
	if err := unix.Connect(fd, sockaddr(addr)); err != nil {
		return 0, err
	}
	if err := roundTrip(fd, req, resp); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// startEcho runs a TCP echo server in n.
func startEcho(t testing.TB, n *ns, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	err := n.do(func() (err error) {
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

func percentile(samples []time.Duration, p float64) time.Duration {
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkClusterIPvsPodIP: the same backend pod, reached from the node by
// its ClusterIP (socket LB) and by its pod IP, samples alternating. "conn"
// is a request on a new connection (connect + 64-byte echo), "keepalive" a
// request on an open one, req/s the throughput of 4 clients making
// connections.
func BenchmarkClusterIPvsPodIP(b *testing.B) {
	requireRoot(b)
	pn := newPodNet(b)
	backend := pn.addPod(b)
	podAddr := netip.AddrPortFrom(backend.ip, 8080)
	startEcho(b, backend.ns, podAddr)
	lb := openLB(b, Config{LocalCIDRs: []netip.Prefix{pn.cidr}})
	svc := Service{Name: "bench/echo", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: []Backend{{IP: backend.ip, Port: 8080}}}
	mustSync(b, lb, svc)
	svcAddr := netip.AddrPortFrom(svc.Addr, 80)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	req := bytes.Repeat([]byte("k"), 64)
	resp := make([]byte, 64)
	const n = 3000

	for b.Loop() {
		// Warm up both paths (neighbour entries, caches).
		for range 200 {
			for _, a := range []netip.AddrPort{svcAddr, podAddr} {
				if _, err := connectRequest(a, req, resp); err != nil {
					b.Fatal(err)
				}
			}
		}
		var viaSvc, viaPod []time.Duration
		for i := range 2 * n {
			a, into := svcAddr, &viaSvc
			if i%2 == 1 {
				a, into = podAddr, &viaPod
			}
			d, err := connectRequest(a, req, resp)
			if err != nil {
				b.Fatal(err)
			}
			*into = append(*into, d)
		}
		svc50, pod50 := percentile(viaSvc, 0.5), percentile(viaPod, 0.5)
		b.ReportMetric(us(svc50), "conn-clusterip-p50-us")
		b.ReportMetric(us(pod50), "conn-podip-p50-us")
		b.ReportMetric(float64(svc50)/float64(pod50), "conn-ratio-p50")

		// Keep-alive: one open connection each way.
		fds := make([]int, 2)
		for i, a := range []netip.AddrPort{svcAddr, podAddr} {
			fd, err := newSocket()
			if err != nil {
				b.Fatal(err)
			}
			defer closeRST(fd)
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
			if err := unix.Connect(fd, sockaddr(a)); err != nil {
				b.Fatal(err)
			}
			fds[i] = fd
		}
		viaSvc, viaPod = viaSvc[:0], viaPod[:0]
		for i := range 2 * n {
			fd, into := fds[0], &viaSvc
			if i%2 == 1 {
				fd, into = fds[1], &viaPod
			}
			start := time.Now()
			if err := roundTrip(fd, req, resp); err != nil {
				b.Fatal(err)
			}
			*into = append(*into, time.Since(start))
		}
		svc50, pod50 = percentile(viaSvc, 0.5), percentile(viaPod, 0.5)
		b.ReportMetric(us(svc50), "keepalive-clusterip-p50-us")
		b.ReportMetric(us(pod50), "keepalive-podip-p50-us")
		b.ReportMetric(float64(svc50)/float64(pod50), "keepalive-ratio-p50")

		// Throughput: short rounds of 4 clients, alternating targets, so
		// that load from elsewhere hits both alike.
		var svcRate, podRate float64
		const rounds = 20
		for r := range 2 * rounds {
			a := svcAddr
			if r%2 == 1 {
				a = podAddr
			}
			rate, err := throughput(a, 4, 150*time.Millisecond)
			if err != nil {
				b.Fatal(err)
			}
			if r%2 == 0 {
				svcRate += rate / rounds
			} else {
				podRate += rate / rounds
			}
		}
		b.ReportMetric(svcRate, "clusterip-req/s")
		b.ReportMetric(podRate, "podip-req/s")
		b.ReportMetric(svcRate/podRate, "ratio-req/s")
	}
}

// throughput runs clients making requests on new connections to addr for
// d and returns the requests per second.
func throughput(addr netip.AddrPort, clients int, d time.Duration) (float64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int
	var errs []error
	deadline := time.Now().Add(d)
	for range clients {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			req := bytes.Repeat([]byte("t"), 64)
			resp := make([]byte, 64)
			count := 0
			for time.Now().Before(deadline) {
				if _, err := connectRequest(addr, req, resp); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				count++
			}
			mu.Lock()
			total += count
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(total) / d.Seconds(), errors.Join(errs...)
}

// linkNS joins two namespaces with a veth pair in a free /30 of
// 10.<second>.0.0/16 and returns the addresses of a's and b's ends.
func linkNS(t testing.TB, a, b *ns, second byte) (netip.Addr, netip.Addr) {
	t.Helper()
	p := freePrefix(t, second, 30)
	ipA, ipB := nth(p, 1), nth(p, 2)
	ifA, ifB := "kbe"+randHex(4)+"a", "kbe"+randHex(4)+"b"
	run(t, "ip", "link", "add", ifA, "netns", a.name, "type", "veth", "peer", "name", ifB, "netns", b.name)
	for _, s := range []struct {
		ns   *ns
		ifc  string
		addr netip.Addr
	}{{a, ifA, ipA}, {b, ifB, ipB}} {
		run(t, "ip", "-n", s.ns.name, "addr", "add", netip.PrefixFrom(s.addr, 30).String(), "dev", s.ifc)
		run(t, "ip", "-n", s.ns.name, "link", "set", s.ifc, "up")
	}
	return ipA, ipB
}

// kubeProxyRules returns an iptables-restore input for the nat table the
// way kube-proxy (iptables mode) writes it: KUBE-SERVICES matches each
// ClusterIP and jumps to the service's KUBE-SVC chain, which picks one of
// the KUBE-SEP endpoint chains with -m statistic --mode random, which DNAT.
// Every service has two endpoints: backend and the next port.
func kubeProxyRules(svcs []netip.Addr, port uint16, podCIDR netip.Prefix, backend netip.AddrPort) string {
	var chains, rules strings.Builder
	chains.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	chains.WriteString(":KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n")
	rules.WriteString("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	rules.WriteString("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	rules.WriteString("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n")
	rules.WriteString("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n")
	rules.WriteString("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n")
	rules.WriteString("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n")
	rules.WriteString("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n")
	for i, ip := range svcs {
		name := fmt.Sprintf("bench/svc-%d:http", i)
		svc := fmt.Sprintf("KUBE-SVC-%016X", i)
		fmt.Fprintf(&chains, ":%s - [0:0]\n", svc)
		fmt.Fprintf(&rules, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport %d -j %s\n", ip, name, port, svc)
		fmt.Fprintf(&rules, "-A %s ! -s %s -d %s/32 -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport %d -j KUBE-MARK-MASQ\n", svc, podCIDR, ip, name, port)
		for e := range 2 {
			ep := netip.AddrPortFrom(backend.Addr(), backend.Port()+uint16(e))
			sep := fmt.Sprintf("KUBE-SEP-%015X%d", i, e)
			fmt.Fprintf(&chains, ":%s - [0:0]\n", sep)
			if e == 0 {
				fmt.Fprintf(&rules, "-A %s -m comment --comment \"%s -> %s\" -m statistic --mode random --probability 0.50000000000 -j %s\n", svc, name, ep, sep)
			} else {
				fmt.Fprintf(&rules, "-A %s -m comment --comment \"%s -> %s\" -j %s\n", svc, name, ep, sep)
			}
			fmt.Fprintf(&rules, "-A %s -s %s/32 -m comment --comment \"%s\" -j KUBE-MARK-MASQ\n", sep, ep.Addr(), name)
			fmt.Fprintf(&rules, "-A %s -p tcp -m comment --comment \"%s\" -m tcp -j DNAT --to-destination %s\n", sep, name, ep)
		}
	}
	rules.WriteString("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n")
	return chains.String() + rules.String() + "COMMIT\n"
}

// addrsIn returns n distinct addresses of 10.<second>.0.0/16 in order.
func addrsIn(second byte, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range n {
		out[i] = netip.AddrFrom4([4]byte{10, second, byte((i + 1) >> 8), byte(i + 1)})
	}
	return out
}

// BenchmarkConnectIptablesVsEBPF: the time of connect(2) to the last of N
// services, through kube-proxy-style iptables rules (in a namespace of its
// own) and through this package's socket LB (another namespace, same
// backend, same kind of link), samples alternating.
func BenchmarkConnectIptablesVsEBPF(b *testing.B) {
	requireRoot(b)
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		b.Skip("iptables-restore is not installed")
	}
	srv := newNS(b, "srv")
	iptClient := newNS(b, "ipt")
	bpfClient := newNS(b, "bpf")
	iptSrvIP, _ := linkNS(b, srv, iptClient, 205)
	bpfSrvIP, _ := linkNS(b, srv, bpfClient, 205)
	// ClusterIPs need a route before the nat table sees them, as on a node.
	run(b, "ip", "-n", iptClient.name, "route", "add", "default", "via", iptSrvIP.String())
	run(b, "ip", "-n", bpfClient.name, "route", "add", "default", "via", bpfSrvIP.String())
	startEcho(b, srv, netip.AddrPortFrom(netip.IPv4Unspecified(), 8080))
	startEcho(b, srv, netip.AddrPortFrom(netip.IPv4Unspecified(), 8081))
	lb := openLB(b, Config{})

	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			iptSvcs := addrsIn(210, n)
			start := time.Now()
			rules := kubeProxyRules(iptSvcs, 80, netip.MustParsePrefix("10.244.0.0/16"), netip.AddrPortFrom(iptSrvIP, 8080))
			cmd := exec.Command("ip", "netns", "exec", iptClient.name, "iptables-restore")
			cmd.Stdin = strings.NewReader(rules)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("iptables-restore: %v\n%s", err, out)
			}
			iptLoad := time.Since(start)

			bpfSvcs := make([]Service, n)
			for i, a := range addrsIn(211, n) {
				bpfSvcs[i] = Service{Name: fmt.Sprintf("bench/svc-%d:http", i), Addr: a, Port: 80, Protocol: TCP,
					Backends: []Backend{{IP: bpfSrvIP, Port: 8080}, {IP: bpfSrvIP, Port: 8081}}}
			}
			start = time.Now()
			mustSync(b, lb, bpfSvcs...)
			bpfLoad := time.Since(start)
			iptLast := netip.AddrPortFrom(iptSvcs[n-1], 80)
			bpfLast := netip.AddrPortFrom(bpfSvcs[n-1].Addr, 80)

			for b.Loop() {
				ipt, bpf, err := alternateConnects(iptClient, bpfClient, iptLast, bpfLast, 3000)
				if err != nil {
					b.Fatal(err)
				}
				ipt50, bpf50 := percentile(ipt, 0.5), percentile(bpf, 0.5)
				b.ReportMetric(us(bpf50), "ebpf-p50-us")
				b.ReportMetric(us(ipt50), "iptables-p50-us")
				b.ReportMetric(float64(ipt50)/float64(bpf50), "iptables/ebpf-p50")
				b.ReportMetric(us(percentile(bpf, 0.99)), "ebpf-p99-us")
				b.ReportMetric(us(percentile(ipt, 0.99)), "iptables-p99-us")
				b.ReportMetric(ms(iptLoad), "iptables-restore-ms")
				b.ReportMetric(ms(bpfLoad), "ebpf-sync-ms")
			}
		})
	}
}

// alternateConnects times n connects from each namespace, alternating. The
// sockets are made in their namespaces beforehand (a socket keeps its
// namespace), and connected from this locked thread.
func alternateConnects(aNS, bNS *ns, a, b netip.AddrPort, n int) (as, bs []time.Duration, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const batch = 100
	for done := 0; done < n; done += batch {
		var aFDs, bFDs []int
		mk := func(into *[]int) func() error {
			return func() error {
				for range batch {
					fd, err := newSocket()
					if err != nil {
						return err
					}
					*into = append(*into, fd)
				}
				return nil
			}
		}
		if err := errors.Join(aNS.do(mk(&aFDs)), bNS.do(mk(&bFDs))); err != nil {
			return nil, nil, err
		}
		for i := range batch {
			for _, s := range []struct {
				fd   int
				to   netip.AddrPort
				into *[]time.Duration
			}{{aFDs[i], a, &as}, {bFDs[i], b, &bs}} {
				start := time.Now()
				err := unix.Connect(s.fd, sockaddr(s.to))
				d := time.Since(start)
				closeRST(s.fd)
				if err != nil {
					for _, fd := range append(aFDs[i+1:], bFDs[i+1:]...) {
						unix.Close(fd)
					}
					return nil, nil, fmt.Errorf("connect %s: %w", s.to, err)
				}
				*s.into = append(*s.into, d)
			}
		}
	}
	return as, bs, nil
}

// syncServices returns n services with three backends each, in ranges no
// test uses (the load balancer sits on an empty cgroup anyway).
func syncServices(n int) []Service {
	svcs := make([]Service, n)
	for i, a := range addrsIn(213, n) {
		svcs[i] = Service{Name: fmt.Sprintf("bench/svc-%d:http", i), Addr: a, Port: 80, Protocol: TCP}
		for j := range 3 {
			svcs[i].Backends = append(svcs[i].Backends, Backend{
				IP: netip.AddrFrom4([4]byte{10, 212, byte(i >> 6), byte(i<<2) + byte(j)}), Port: 8080})
		}
	}
	return svcs
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// BenchmarkSync: a full sync of 10,000 services (three backends each) into
// empty maps, and an endpoint change (one backend of one service added or
// removed) until the maps hold it: through Sync given the whole list, and
// through Update given the one service. "cpu" figures are the thread's CPU
// time, which other load on the machine does not stretch.
func BenchmarkSync(b *testing.B) {
	requireRoot(b)
	lb := openLB(b, Config{CgroupPath: testCgroup(b)})
	const n = 10000
	svcs := syncServices(n)
	rng := rand.New(rand.NewPCG(3, 4))
	change := func(i int) *Service {
		s := &svcs[rng.IntN(n)]
		if i%2 == 0 || len(s.Backends) < 2 {
			s.Backends = append(s.Backends, Backend{IP: netip.AddrFrom4([4]byte{10, 214, byte(i >> 8), byte(i)}), Port: 8080})
		} else {
			s.Backends = s.Backends[1:]
		}
		return s
	}
	// samples makes 1000 endpoint changes through do and returns their wall
	// times, or with cpu their thread CPU times (on a locked thread).
	samples := func(do func(*Service) error, cpu bool) []time.Duration {
		if cpu {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
		}
		var out []time.Duration
		for i := range 1000 {
			// Changes arrive as events to an otherwise idle agent, not
			// in a CPU-bound loop that a busy machine keeps preempting.
			time.Sleep(time.Millisecond)
			s := change(i)
			start, startCPU := time.Now(), threadCPU()
			if err := do(s); err != nil {
				b.Fatal(err)
			}
			if cpu {
				out = append(out, threadCPU()-startCPU)
			} else {
				out = append(out, time.Since(start))
			}
		}
		return out
	}
	viaSync := func(*Service) error { return lb.Sync(svcs) }
	viaUpdate := func(s *Service) error { return lb.Update([]Service{*s}) }
	for b.Loop() {
		var full []time.Duration
		for range 3 {
			if err := lb.Sync(nil); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if err := lb.Sync(svcs); err != nil {
				b.Fatal(err)
			}
			full = append(full, time.Since(start))
		}
		b.ReportMetric(ms(percentile(full, 0.5)), "full-sync-ms")
		b.ReportMetric(ms(slices.Max(full)), "full-sync-max-ms")

		wall := samples(viaSync, false)
		b.ReportMetric(ms(percentile(wall, 0.5)), "endpoint-p50-ms")
		b.ReportMetric(ms(percentile(wall, 0.99)), "endpoint-p99-ms")
		b.ReportMetric(ms(percentile(samples(viaSync, true), 0.99)), "endpoint-cpu-p99-ms")
		wall = samples(viaUpdate, false)
		b.ReportMetric(ms(percentile(wall, 0.5)), "update-p50-ms")
		b.ReportMetric(ms(percentile(wall, 0.99)), "update-p99-ms")
		b.ReportMetric(ms(percentile(samples(viaUpdate, true), 0.99)), "update-cpu-p99-ms")
	}
	got, err := lb.Services()
	if err != nil {
		b.Fatal(err)
	}
	if diff := cmp.Diff(normalize(svcs), got, addrCmp); diff != "" {
		b.Fatalf("maps after the benchmark (-want +got):\n%s", diff)
	}
}
