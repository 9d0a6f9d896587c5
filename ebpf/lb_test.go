package ebpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// cluster is a pod network with backends (TCP and UDP servers on port 8080
// named after their pods) and a client pod.
type cluster struct {
	net      *podNet
	backends []*pod
	client   *pod
}

func newCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{net: newPodNet(t)}
	for i := range n {
		p := c.net.addPod(t)
		c.backends = append(c.backends, p)
		name := fmt.Sprintf("be%d", i)
		startTCP(t, p.ns, name, netip.AddrPortFrom(p.ip, 8080))
		startUDP(t, p.ns, name, netip.AddrPortFrom(p.ip, 8080))
	}
	c.client = c.net.addPod(t)
	return c
}

// backendsOf returns the backends (port 8080) of the pods i.
func (c *cluster) backendsOf(i ...int) []Backend {
	var out []Backend
	for _, i := range i {
		out = append(out, Backend{IP: c.backends[i].ip, Port: 8080})
	}
	return out
}

// checkShares fails unless every backend got a sane share of n connections.
func checkShares(t testing.TB, got map[string]int, backends []string, n int) {
	t.Helper()
	for _, b := range backends {
		if share := float64(got[b]) / float64(n); share < 0.6/float64(len(backends)) {
			t.Errorf("backend %s got %d of %d connections: %v", b, got[b], n, got)
		}
	}
	for b := range got {
		if !slices.Contains(backends, b) {
			t.Errorf("backend %s answered but is not a backend: %v", b, got)
		}
	}
}

func TestCheckKernel(t *testing.T) {
	requireRoot(t)
	if err := CheckKernel(Config{Node: "check"}); err != nil {
		t.Fatalf("CheckKernel: %v", err)
	}
	if err := CheckKernel(Config{Node: "check", PinRoot: "/tmp/not-bpffs", CgroupPath: "/tmp"}); !errors.Is(err, ErrNotSupported) ||
		!strings.Contains(err.Error(), "bpf filesystem") || !strings.Contains(err.Error(), "cgroup v2: /tmp is not a cgroup2") {
		t.Errorf("CheckKernel with a bad pin root and cgroup = %v", err)
	}
}

// TCP to a ClusterIP from the node and from a pod reaches every backend,
// evenly, and the socket reports the ClusterIP as its peer.
func TestClusterIPTCP(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	c := newCluster(t, 3)
	lb := openLB(t, Config{LocalCIDRs: []netip.Prefix{c.net.cidr}})
	svc := Service{Name: "test/web:http", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(0, 1, 2)}
	mustSync(t, lb, svc)
	front := netip.AddrPortFrom(svc.Addr, 80)

	const n = 1500
	for _, from := range []struct {
		name string
		ns   *ns
	}{{"node", nil}, {"pod", c.client.ns}} {
		got := greetMany(t, from.ns, front, n)
		t.Logf("from the %s: %v", from.name, got)
		checkShares(t, got, []string{"be0", "be1", "be2"}, n)
	}

	// getpeername(2) itself, on a connected socket.
	conn, err := net.Dial("tcp4", front.String())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var peer unix.Sockaddr
	raw.Control(func(fd uintptr) { peer, err = unix.Getpeername(int(fd)) })
	conn.Close()
	if sa, ok := peer.(*unix.SockaddrInet4); err != nil || !ok || netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)) != front {
		t.Errorf("getpeername = %+v, %v; want %s", peer, err, front)
	}

	// Addresses that are not services pass untouched.
	if _, err := greet(netip.AddrPortFrom(c.backends[1].ip, 8080)); err != nil {
		t.Errorf("direct connection to a pod: %v", err)
	}

	got, err := lb.Services()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(normalize([]Service{svc}), got, addrCmp); diff != "" {
		t.Errorf("Services (-want +got):\n%s", diff)
	}
}

// Sync changes which backends new connections reach; a service without
// backends refuses connections at once with ECONNREFUSED.
func TestBackendChanges(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	c := newCluster(t, 3)
	lb := openLB(t, Config{LocalCIDRs: []netip.Prefix{c.net.cidr}})
	svc := Service{Name: "test/web", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(0, 1, 2)}
	front := netip.AddrPortFrom(svc.Addr, 80)
	mustSync(t, lb, svc)

	svc.Backends = c.backendsOf(0, 2)
	mustSync(t, lb, svc)
	got := greetMany(t, c.client.ns, front, 300)
	checkShares(t, got, []string{"be0", "be2"}, 300)

	svc.Backends = c.backendsOf(0, 1, 2)
	mustSync(t, lb, svc)
	got = greetMany(t, c.client.ns, front, 300)
	checkShares(t, got, []string{"be0", "be1", "be2"}, 300)

	// Terminating backends get no new connections.
	svc.Backends[0].Terminating = true
	mustSync(t, lb, svc)
	got = greetMany(t, nil, front, 300)
	checkShares(t, got, []string{"be1", "be2"}, 300)

	for _, backends := range [][]Backend{nil, {{IP: c.backends[0].ip, Port: 8080, Terminating: true}}} {
		svc.Backends = backends
		mustSync(t, lb, svc)
		for _, from := range []*ns{nil, c.client.ns} {
			err := from.do(func() error {
				start := time.Now()
				_, err := net.DialTimeout("tcp4", front.String(), 2*time.Second)
				if took := time.Since(start); took > 100*time.Millisecond {
					return fmt.Errorf("refusal took %v", took)
				}
				return err
			})
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("connect to a service with backends %v: %v, want ECONNREFUSED at once", backends, err)
			}
		}
	}
	// UDP too: the send fails.
	udp := Service{Name: "test/dns", Addr: svc.Addr, Port: 53, Protocol: UDP}
	mustSync(t, lb, svc, udp)
	conn, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(udp.Addr, 53))); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("send to a UDP service without backends: %v, want ECONNREFUSED", err)
	}
}

// ask sends a datagram on conn (to addr, or connected when addr is nil) and
// returns the backend that answered and the source address of the answer.
func ask(conn *net.UDPConn, addr *net.UDPAddr) (backend string, from netip.AddrPort, err error) {
	if addr != nil {
		_, err = conn.WriteToUDP([]byte("hello"), addr)
	} else {
		_, err = conn.Write([]byte("hello"))
	}
	if err != nil {
		return "", from, err
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	n, src, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return "", from, err
	}
	backend, _, _ = strings.Cut(string(buf[:n]), " ")
	return backend, src, nil
}

// Replies to a UDP service come from the service address; a socket keeps
// its backend; different sockets spread over the backends.
func TestUDP(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	c := newCluster(t, 3)
	lb := openLB(t, Config{LocalCIDRs: []netip.Prefix{c.net.cidr}})
	svc := Service{Name: "test/dns", Addr: serviceAddr(), Port: 53, Protocol: UDP, Backends: c.backendsOf(0, 1, 2)}
	mustSync(t, lb, svc)
	front := netip.AddrPortFrom(svc.Addr, 53)
	frontUDP := net.UDPAddrFromAddrPort(front)

	err := c.client.do(func() error {
		seen := map[string]int{}
		for range 60 {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{})
			if err != nil {
				return err
			}
			first := ""
			for i := range 5 {
				backend, from, err := ask(conn, frontUDP)
				if err != nil {
					conn.Close()
					return fmt.Errorf("unconnected socket: %w", err)
				}
				if from != front {
					conn.Close()
					return fmt.Errorf("unconnected socket: reply from %s, want %s", from, front)
				}
				if i == 0 {
					first = backend
				} else if backend != first {
					conn.Close()
					return fmt.Errorf("unconnected socket moved from %s to %s", first, backend)
				}
			}
			conn.Close()
			seen[first]++
		}
		if len(seen) < 3 {
			return fmt.Errorf("60 sockets reached only %v", seen)
		}

		conn, err := net.DialUDP("udp4", nil, frontUDP)
		if err != nil {
			return err
		}
		defer conn.Close()
		if got := conn.RemoteAddr().String(); got != front.String() {
			return fmt.Errorf("connected socket's peer is %s, want %s", got, front)
		}
		_, from, err := ask(conn, nil)
		if err != nil {
			return fmt.Errorf("connected socket: %w", err)
		}
		if from != front {
			return fmt.Errorf("connected socket: reply from %s, want %s", from, front)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ClientIP affinity: every connection of a client (a network namespace)
// reaches one backend, until that backend terminates.
func TestAffinity(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	c := newCluster(t, 3)
	lb := openLB(t, Config{LocalCIDRs: []netip.Prefix{c.net.cidr}})
	svc := Service{Name: "test/sticky", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(0, 1, 2),
		AffinityTimeout: time.Hour}
	mustSync(t, lb, svc)
	front := netip.AddrPortFrom(svc.Addr, 80)
	got := greetMany(t, c.client.ns, front, 50)
	if len(got) != 1 {
		t.Fatalf("with affinity one client reached %v", got)
	}
	var first string
	for b := range got {
		first = b
	}
	i := int(first[len(first)-1] - '0')
	svc.Backends[i].Terminating = true
	mustSync(t, lb, svc)
	got = greetMany(t, c.client.ns, front, 50)
	if len(got) != 1 || got[first] != 0 {
		t.Fatalf("after %s terminated the client reached %v", first, got)
	}
}

// Several nodes' programs attached to the cgroup root at once each
// translate their own services only.
func TestTwoNodesShareTheCgroupRoot(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	c := newCluster(t, 2)
	a := openLB(t, Config{})
	b := openLB(t, Config{})
	svcA := Service{Name: "a", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(0)}
	svcB := Service{Name: "b", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(1)}
	mustSync(t, a, svcA)
	mustSync(t, b, svcB)
	if got := greetMany(t, c.client.ns, netip.AddrPortFrom(svcA.Addr, 80), 20); got["be0"] != 20 {
		t.Errorf("node a's service reached %v", got)
	}
	if got := greetMany(t, c.client.ns, netip.AddrPortFrom(svcB.Addr, 80), 20); got["be1"] != 20 {
		t.Errorf("node b's service reached %v", got)
	}
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := greetMany(t, nil, netip.AddrPortFrom(svcB.Addr, 80), 20); got["be1"] != 20 {
		t.Errorf("after node a left, node b's service reached %v", got)
	}
}

// nodeFixture is a node with external interfaces: an outside client, local
// backends on the pod network and a "remote" backend beyond a second
// external link. Its load balancer's socket programs sit on an empty
// cgroup, so the outside client's connections reach the node as packets.
type nodeFixture struct {
	*cluster
	client *outside // the outside client
	remote *outside // a namespace with a backend that is not local
	cfg    Config
	lb     *LB
}

func newNodeFixture(t *testing.T) *nodeFixture {
	t.Helper()
	f := &nodeFixture{cluster: newCluster(t, 2)}
	f.client = newOutside(t, 203, "cl")
	f.remote = newOutside(t, 204, "rm")
	startTCP(t, f.remote.ns, "remote", netip.AddrPortFrom(f.remote.ip, 8080))
	startUDP(t, f.remote.ns, "remote", netip.AddrPortFrom(f.remote.ip, 8080))
	f.cfg = Config{
		Node:               "ebpftest-" + randHex(4),
		CgroupPath:         testCgroup(t),
		ExternalInterfaces: []string{f.client.hostIf, f.remote.hostIf},
		LocalCIDRs:         []netip.Prefix{f.net.cidr},
		NodeAddr:           f.remote.hostIP,
		Log:                testLogger(t),
	}
	f.lb = openLB(t, f.cfg)
	return f
}

func nodePort() uint16 { return 30000 + uint16(randByte())*10 + uint16(randByte()%10) }

// NodePort and LoadBalancer traffic from outside is translated both ways by
// the TCX programs: local backends see the client, a remote backend sees the
// node address (SNAT), LocalOnly uses local backends only.
func TestNodePort(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	f := newNodeFixture(t)
	local := f.backendsOf(0, 1)
	remote := Backend{IP: f.remote.ip, Port: 8080}
	lbIP := serviceAddr()
	np := nodePort()
	svcs := []Service{
		{Name: "np-local", Addr: f.client.hostIP, Port: np, Protocol: TCP, External: true, Backends: local},
		{Name: "np-remote", Addr: f.client.hostIP, Port: np + 1, Protocol: TCP, External: true, Backends: []Backend{remote}},
		{Name: "np-only-local", Addr: f.client.hostIP, Port: np + 2, Protocol: TCP, External: true, LocalOnly: true,
			Backends: append(slices.Clone(local), remote)},
		{Name: "lb-ip", Addr: lbIP, Port: 443, Protocol: TCP, External: true, Backends: local},
		{Name: "np-udp", Addr: f.client.hostIP, Port: np, Protocol: UDP, External: true, Backends: append(slices.Clone(local), remote)},
		{Name: "np-empty", Addr: f.client.hostIP, Port: np + 3, Protocol: TCP, External: true},
		{Name: "cluster-ip-only", Addr: f.client.hostIP, Port: np + 4, Protocol: TCP, Backends: local},
	}
	mustSync(t, f.lb, svcs...)
	run(t, "ip", "-n", f.client.name, "route", "add", lbIP.String()+"/32", "via", f.client.hostIP.String())

	type result struct {
		backends map[string]int
		clients  map[string]int
	}
	greetAll := func(addr netip.AddrPort, n int) (result, error) {
		r := result{map[string]int{}, map[string]int{}}
		err := f.client.do(func() error {
			for range n {
				g, err := greet(addr)
				if err != nil {
					return err
				}
				if g.peer != addr.String() {
					return fmt.Errorf("peer %s, want %s", g.peer, addr)
				}
				r.backends[g.backend]++
				host, _, _ := strings.Cut(g.client, ":")
				r.clients[host]++
			}
			return nil
		})
		return r, err
	}
	clientIP := f.client.ip.String()

	t.Run("local backends keep the client address", func(t *testing.T) {
		r, err := greetAll(netip.AddrPortFrom(f.client.hostIP, np), 300)
		if err != nil {
			t.Fatal(err)
		}
		checkShares(t, r.backends, []string{"be0", "be1"}, 300)
		if r.clients[clientIP] != 300 {
			t.Errorf("backends saw clients %v, want %s", r.clients, clientIP)
		}
	})
	t.Run("a remote backend sees the node address", func(t *testing.T) {
		err := f.client.do(func() error {
			for range 20 {
				g, err := greet(netip.AddrPortFrom(f.client.hostIP, np+1))
				if err != nil {
					return err
				}
				ap, err := netip.ParseAddrPort(g.client)
				if err != nil || g.backend != "remote" || ap.Addr() != f.remote.hostIP || ap.Port() < 61000 {
					return fmt.Errorf("remote backend %s saw client %s, want %s:61000-65535", g.backend, g.client, f.remote.hostIP)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("LocalOnly uses local backends and keeps the client", func(t *testing.T) {
		r, err := greetAll(netip.AddrPortFrom(f.client.hostIP, np+2), 200)
		if err != nil {
			t.Fatal(err)
		}
		checkShares(t, r.backends, []string{"be0", "be1"}, 200)
		if r.clients[clientIP] != 200 {
			t.Errorf("backends saw clients %v, want %s", r.clients, clientIP)
		}
	})
	t.Run("LoadBalancer IP", func(t *testing.T) {
		r, err := greetAll(netip.AddrPortFrom(lbIP, 443), 100)
		if err != nil {
			t.Fatal(err)
		}
		checkShares(t, r.backends, []string{"be0", "be1"}, 100)
	})
	t.Run("UDP replies come from the frontend", func(t *testing.T) {
		front := netip.AddrPortFrom(f.client.hostIP, np)
		seen := map[string]int{}
		err := f.client.do(func() error {
			for range 40 {
				conn, err := net.ListenUDP("udp4", &net.UDPAddr{})
				if err != nil {
					return err
				}
				backend, from, err := ask(conn, net.UDPAddrFromAddrPort(front))
				conn.Close()
				if err != nil {
					return err
				}
				if from != front {
					return fmt.Errorf("reply from %s, want %s", from, front)
				}
				seen[backend]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) < 2 {
			t.Errorf("40 clients reached only %v", seen)
		}
	})
	t.Run("no backends, not external: not translated", func(t *testing.T) {
		for _, port := range []uint16{np + 3, np + 4} {
			err := f.client.do(func() error {
				_, err := net.DialTimeout("tcp4", netip.AddrPortFrom(f.client.hostIP, port).String(), 300*time.Millisecond)
				return err
			})
			if err == nil {
				t.Errorf("port %d: connected", port)
			}
		}
	})
	t.Run("pins keep translating over an agent restart", func(t *testing.T) {
		dir := filepath.Join(DefaultPinRoot, f.cfg.Node)
		before := pinnedIDs(t, dir)
		if err := f.lb.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := greetAll(netip.AddrPortFrom(f.client.hostIP, np), 100)
		if err != nil {
			t.Fatalf("with the load balancer closed: %v", err)
		}
		checkShares(t, r.backends, []string{"be0", "be1"}, 100)
		lb, err := Open(f.cfg)
		if err != nil {
			t.Fatal(err)
		}
		after := pinnedIDs(t, dir)
		lb.Close()
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("pinned objects after reopening (-before +after):\n%s", diff)
		}

		// An interface dropped from the config loses its programs.
		cfg := f.cfg
		cfg.ExternalInterfaces = []string{f.client.hostIf}
		lb, err = Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		after = pinnedIDs(t, dir)
		lb.Close()
		for pin := range before {
			_, still := after[pin]
			if strings.HasSuffix(pin, "_"+f.remote.hostIf) == still {
				t.Errorf("%s: pinned %v after dropping %s", pin, still, f.remote.hostIf)
			}
		}
		if _, err := greetAll(netip.AddrPortFrom(f.client.hostIP, np), 20); err != nil {
			t.Errorf("after dropping the other interface: %v", err)
		}
	})
	t.Run("from the node itself, by the socket programs", func(t *testing.T) {
		// This node's socket programs sit on an empty cgroup; a second
		// node on the cgroup root shows the node's own connections.
		lb := openLB(t, Config{})
		mustSync(t, lb, svcs[0])
		got := greetMany(t, nil, netip.AddrPortFrom(f.client.hostIP, np), 100)
		checkShares(t, got, []string{"be0", "be1"}, 100)
	})
}

// An agent restart: Close leaves traffic flowing; a new Open finds the
// pins (same links, same programs) and the next Sync removes what is stale.
func TestRestart(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	c := newCluster(t, 3)
	cfg := Config{Node: "ebpftest-" + randHex(4), LocalCIDRs: []netip.Prefix{c.net.cidr}, Log: testLogger(t)}
	keep := Service{Name: "test/keep", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(0, 1)}
	gone := Service{Name: "test/gone", Addr: serviceAddr(), Port: 81, Protocol: TCP, Backends: c.backendsOf(2)}

	lb := openLB(t, cfg)
	mustSync(t, lb, keep, gone)
	before := pinnedIDs(t, filepath.Join(DefaultPinRoot, cfg.Node))
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}

	got := greetMany(t, c.client.ns, netip.AddrPortFrom(keep.Addr, 80), 100)
	checkShares(t, got, []string{"be0", "be1"}, 100)
	if got := greetMany(t, nil, netip.AddrPortFrom(gone.Addr, 81), 10); got["be2"] != 10 {
		t.Errorf("closed: %v", got)
	}

	lb2 := openLB(t, cfg)
	if diff := cmp.Diff(before, pinnedIDs(t, filepath.Join(DefaultPinRoot, cfg.Node))); diff != "" {
		t.Errorf("pinned objects after reopening (-before +after):\n%s", diff)
	}
	svcs, err := lb2.Services()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(normalize([]Service{keep, gone}), svcs, addrCmp); diff != "" {
		t.Errorf("Services after reopening (-want +got):\n%s", diff)
	}
	keep.Backends = c.backendsOf(2)
	mustSync(t, lb2, keep)
	svcs, err = lb2.Services()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(normalize([]Service{keep}), svcs, addrCmp); diff != "" {
		t.Errorf("Services after a sync (-want +got):\n%s", diff)
	}
	if got := greetMany(t, c.client.ns, netip.AddrPortFrom(keep.Addr, 80), 20); got["be2"] != 20 {
		t.Errorf("after the sync: %v", got)
	}
	contents, err := lb2.readState()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(contents.strayKeys) + len(contents.strayBackends) + len(contents.strayNames); n != 0 {
		t.Errorf("%d stray entries", n)
	}
}

// pinnedIDs returns the kernel IDs of the objects pinned in dir, by pin.
func pinnedIDs(t testing.TB, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case isLinkPin(e.Name()):
			l, err := link.LoadPinnedLink(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			info, err := l.Info()
			l.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = fmt.Sprintf("link %d prog %d", info.ID, info.Program)
		case strings.HasPrefix(e.Name(), progPinPrefix):
			p, err := ebpf.LoadPinnedProgram(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = fmt.Sprintf("prog %d", progID(p))
			p.Close()
		default:
			m, err := ebpf.LoadPinnedMap(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			info, err := m.Info()
			m.Close()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := info.ID()
			out[e.Name()] = fmt.Sprintf("map %d", id)
		}
	}
	return out
}

// A new object replaces the attached programs through the same links, and
// the maps with their contents stay.
func TestOpenReplacesChangedPrograms(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	c := newCluster(t, 1)
	cfg := Config{Node: "ebpftest-" + randHex(4), Log: testLogger(t)}
	lb := openLB(t, cfg)
	svc := Service{Name: "test/web", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(0)}
	mustSync(t, lb, svc)
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(DefaultPinRoot, cfg.Node)
	before := pinnedIDs(t, dir)

	spec, err := newSpec()
	if err != nil {
		t.Fatal(err)
	}
	// Another version of connect4: the same code behind a no-op.
	p := spec.Programs[lbProgLb4Connect4]
	// The function's metadata (symbol, BTF func info) moves to the new first instruction.
	first := p.Instructions[0]
	nop := asm.Mov.Reg(asm.R1, asm.R1)
	nop.Metadata, first.Metadata = first.Metadata, asm.Metadata{}
	p.Instructions = append(asm.Instructions{nop, first}, p.Instructions[1:]...)
	lb2, err := openSpec(cfg, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer lb2.Close()
	after := pinnedIDs(t, dir)
	for pin, id := range before {
		changed := after[pin] != id
		switch pin {
		case "prog_" + lbProgLb4Connect4:
			if !changed {
				t.Errorf("%s: not replaced", pin)
			}
		case "link_cgroup_connect4":
			if !strings.HasPrefix(after[pin], strings.Fields(id)[0]+" "+strings.Fields(id)[1]+" ") || !changed {
				t.Errorf("%s: %s -> %s, want the same link running another program", pin, id, after[pin])
			}
		default:
			if changed {
				t.Errorf("%s: %s -> %s, want unchanged", pin, id, after[pin])
			}
		}
	}
	if got := greetMany(t, nil, netip.AddrPortFrom(svc.Addr, 80), 10); got["be0"] != 10 {
		t.Errorf("after the update: %v", got)
	}
}

// Unpin detaches everything, even without an LB.
func TestUnpin(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	c := newCluster(t, 1)
	cfg := Config{Node: "ebpftest-" + randHex(4), Log: testLogger(t)}
	lb := openLB(t, cfg)
	svc := Service{Name: "test/web", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(0)}
	mustSync(t, lb, svc)
	var ids []link.ID
	for _, l := range lb.links {
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Unpin(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(DefaultPinRoot, cfg.Node)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory: %v", err)
	}
	// The kernel frees a link whose last pin and descriptor are gone from
	// a work queue, so its ID can outlive Unpin for a moment.
	for _, id := range ids {
		deadline := time.Now().Add(5 * time.Second)
		for {
			l, err := link.NewFromID(id)
			if err != nil {
				break
			}
			l.Close()
			if time.Now().After(deadline) {
				t.Errorf("link %d still exists 5s after Unpin", id)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// A pinned map of another layout (an older object) is replaced.
func TestOpenReplacesIncompatibleMap(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	cfg := Config{Node: "ebpftest-" + randHex(4), CgroupPath: testCgroup(t), Log: testLogger(t)}
	t.Cleanup(func() { Unpin(cfg) })
	if err := ensureBPFFS(DefaultPinRoot); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(DefaultPinRoot, cfg.Node)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: lbMapLb4Names, Type: ebpf.Hash, KeySize: 4, ValueSize: 32, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(dir, lbMapLb4Names)); err != nil {
		t.Fatal(err)
	}
	old.Close()
	lb := openLB(t, cfg)
	info, err := lb.objs.Lb4Names.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.ValueSize != 64 {
		t.Errorf("names map has values of %d bytes, want 64", info.ValueSize)
	}
	mustSync(t, lb, Service{Name: "test/web", Addr: serviceAddr(), Port: 80, Protocol: TCP})
}

// Update and Delete program single services next to the others.
func TestUpdateDeleteInKernel(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	c := newCluster(t, 2)
	lb := openLB(t, Config{CgroupPath: "", LocalCIDRs: []netip.Prefix{c.net.cidr}})
	a := Service{Name: "test/a", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(0)}
	b := Service{Name: "test/b", Addr: serviceAddr(), Port: 80, Protocol: TCP, Backends: c.backendsOf(1)}
	mustSync(t, lb, a)
	if err := lb.Update([]Service{b}); err != nil {
		t.Fatal(err)
	}
	if got := greetMany(t, c.client.ns, netip.AddrPortFrom(b.Addr, 80), 10); got["be1"] != 10 {
		t.Errorf("updated service reached %v", got)
	}
	a.Backends = c.backendsOf(1)
	if err := lb.Update([]Service{a}); err != nil {
		t.Fatal(err)
	}
	if got := greetMany(t, c.client.ns, netip.AddrPortFrom(a.Addr, 80), 10); got["be1"] != 10 {
		t.Errorf("replaced service reached %v", got)
	}
	if err := lb.Delete([]Service{{Addr: b.Addr, Port: 80, Protocol: TCP}}); err != nil {
		t.Fatal(err)
	}
	got, err := lb.Services()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(normalize([]Service{a}), got, addrCmp); diff != "" {
		t.Errorf("Services (-want +got):\n%s", diff)
	}
	if err := lb.Update([]Service{a, a}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Update with a frontend twice: %v, want ErrInvalid", err)
	}
}
