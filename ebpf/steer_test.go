package ebpf

import (
	"bufio"
	"encoding/binary"
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

// Steering tests run in network namespaces of their own ("nodes"), so the
// program sees only their connections; addresses there are private to the
// test and need not be free on the host.

func TestSteerKeyEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  uint32
		want []byte
	}{
		{"address", steerAddrKey(netip.MustParseAddr("10.1.2.3")), []byte{10, 1, 2, 3}},
		{"mapped address", steerAddrKey(netip.MustParseAddr("::ffff:192.168.0.254")), []byte{192, 168, 0, 254}},
		// Ports in host byte order, as ctx->local_port.
		{"port 80", steerPortKey(80), binary.NativeEndian.AppendUint32(nil, 80)},
		{"port 443", steerPortKey(443), binary.NativeEndian.AppendUint32(nil, 443)},
	} {
		if got := memory(t, tc.key); !slices.Equal(got, tc.want) {
			t.Errorf("%s: key memory %v, want %v", tc.name, got, tc.want)
		}
	}
	a := netip.MustParseAddr("172.16.5.9")
	if got := steerAddr(steerAddrKey(a)); got != a {
		t.Errorf("address round trip: %v, want %v", got, a)
	}
}

// The Go key and value types must have the sizes the object's maps declare.
func TestSteerEntrySizesMatchObject(t *testing.T) {
	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m          string
		typ        ebpf.MapType
		key, value any
	}{
		{steerMapSteer4Addrs, ebpf.Hash, uint32(0), uint8(0)},
		// Written with a descriptor, read as a cookie.
		{steerMapSteer4Socks, ebpf.SockHash, steerPortKey(0), uint64(0)},
	} {
		ms := spec.Maps[tc.m]
		if ms == nil {
			t.Errorf("map %s missing from the object", tc.m)
			continue
		}
		if ms.Type != tc.typ || ms.Pinning != ebpf.PinByName {
			t.Errorf("%s: type %s pinning %v, want %s pinned by name", tc.m, ms.Type, ms.Pinning, tc.typ)
		}
		if got, want := binary.Size(tc.key), int(ms.KeySize); got != want {
			t.Errorf("%s: Go key is %d bytes, map key %d", tc.m, got, want)
		}
		if got, want := binary.Size(tc.value), int(ms.ValueSize); got != want {
			t.Errorf("%s: Go value is %d bytes, map value %d", tc.m, got, want)
		}
	}
}

func TestSteerAddrKeys(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1")
	got, err := steerAddrKeys([]netip.Addr{a, b, netip.AddrFrom16(a.As16()), a})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{b, a}, steerAddrs(got), addrCmp); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	if _, err := steerAddrKeys([]netip.Addr{a, netip.MustParseAddr("fd00::1"), {}}); !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "fd00::1") || !strings.Contains(err.Error(), "invalid IP") {
		t.Errorf("IPv6 and zero addresses: %v, want ErrInvalid naming both", err)
	}
	if keys, err := steerAddrKeys(nil); err != nil || len(keys) != 0 {
		t.Errorf("no addresses: %v, %v", keys, err)
	}

	k := func(s ...string) []uint32 {
		var out []uint32
		for _, s := range s {
			out = append(out, steerAddrKey(netip.MustParseAddr(s)))
		}
		return out
	}
	want, _ := steerAddrKeys([]netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")})
	add, del := diffAddrs(k("10.0.0.1", "10.0.0.2"), want)
	if diff := cmp.Diff([][]uint32{k("10.0.0.3"), k("10.0.0.1")}, [][]uint32{add, del}); diff != "" {
		t.Errorf("diff (-want +got):\n%s", diff)
	}
}

func TestSteerConfigDefaults(t *testing.T) {
	got, err := SteerConfig{Node: "n1", PinRoot: "/sys/fs/bpf/x/"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.PinRoot != "/sys/fs/bpf/x" || got.NetNS != defaultNetNS || got.Log == nil {
		t.Errorf("defaults: %+v", got)
	}
	for _, cfg := range []SteerConfig{{}, {Node: "a/b"}, {Node: "..", PinRoot: "/x"}, {Node: "n", PinRoot: "rel"}} {
		if _, err := cfg.withDefaults(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", cfg, err)
		}
	}
}

func TestCheckSteering(t *testing.T) {
	requireRoot(t)
	if err := CheckSteering(SteerConfig{Node: "check"}); err != nil {
		t.Fatalf("CheckSteering: %v", err)
	}
	if err := CheckSteering(SteerConfig{Node: "check", NetNS: "/tmp"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("CheckSteering with a directory for the namespace: %v, want ErrInvalid", err)
	}
}

// path is the file of a namespace made by newNS.
func (n *ns) path() string { return filepath.Join("/run/netns", n.name) }

// openSteering opens steering for a node of its own and removes it (and
// anything pinned for the node) at the end of the test.
func openSteering(t testing.TB, cfg SteerConfig) *Steering {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "ebpftest-" + randHex(4)
	}
	if cfg.Log == nil {
		cfg.Log = testLogger(t)
	}
	t.Cleanup(func() {
		if err := UnpinSteering(cfg); err != nil {
			t.Errorf("unpin steering: %v", err)
		}
	})
	s, err := OpenSteering(cfg)
	if err != nil {
		t.Fatalf("OpenSteering: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return s
}

// randAddrs returns n distinct random addresses in 10.207.0.0/16 (private to
// the test's namespaces).
func randAddrs(n int) []netip.Addr {
	var out []netip.Addr
	for len(out) < n {
		a := netip.AddrFrom4([4]byte{10, 207, randByte(), randByte() | 1})
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// addLo adds addresses to lo (as /32) in a namespace.
func addLo(t testing.TB, n *ns, addrs ...netip.Addr) {
	t.Helper()
	for _, a := range addrs {
		run(t, "ip", "-n", n.name, "addr", "add", netip.PrefixFrom(a, 32).String(), "dev", "lo")
	}
}

// proxy starts a greeting and echoing server (see startTCP) named name on
// 127.0.0.1:0 in n, as the Ingress proxy listens.
func proxy(t testing.TB, n *ns, name string) (*server, *net.TCPListener) {
	t.Helper()
	var ln *net.TCPListener
	if err := n.do(func() (err error) {
		ln, err = ListenSteerable(t.Context(), "tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return serveTCP(t, name, ln), ln
}

// reach connects from n to addr, checks that the server echoes, and
// returns the greeting: which server answered and the client it saw.
func reach(n *ns, addr netip.AddrPort) (greeting, error) {
	var g greeting
	err := n.do(func() error {
		c, err := net.DialTimeout("tcp4", addr.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read greeting: %w", err)
		}
		g.backend, g.client, _ = strings.Cut(strings.TrimSpace(line), " ")
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		if echo, err := r.ReadString('\n'); err != nil || echo != "ping\n" {
			return fmt.Errorf("echo: %q, %v", echo, err)
		}
		g.peer = c.RemoteAddr().String()
		return nil
	})
	return g, err
}

// wantReach fails unless a connection from n to addr reaches the server
// named want.
func wantReach(t testing.TB, n *ns, addr netip.AddrPort, want string) greeting {
	t.Helper()
	g, err := reach(n, addr)
	if err != nil {
		t.Errorf("connect from %s to %s: %v, want %s", n.name, addr, err, want)
		return g
	}
	if g.backend != want {
		t.Errorf("connect from %s to %s reached %s, want %s", n.name, addr, g.backend, want)
	}
	return g
}

// wantRefused fails unless a connection from n to addr is refused at once
// (not steered, nothing listening, nothing hanging). A connection reset
// before the server said anything counts as refused: on a loaded machine
// the kernel now and then completed the handshake of a connection made
// just after the listener closed, then reset it, with no listener left in
// the namespace (seen in TestSteering and TestSteeringRestart under two
// busy loops). Either way the client gets an error at once and no server.
func wantRefused(t testing.TB, n *ns, addr netip.AddrPort) {
	t.Helper()
	start := time.Now()
	g, err := reach(n, addr)
	refused := errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) && g.backend == ""
	if !refused {
		t.Errorf("connect from %s to %s: reached %q, %v; want ECONNREFUSED", n.name, addr, g.backend, err)
	} else if took := time.Since(start); took > time.Second {
		t.Errorf("connect from %s to %s: refused after %v", n.name, addr, took)
	}
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// steeredAddrs reads steer4_addrs.
func steeredAddrs(t testing.TB, s *Steering) []netip.Addr {
	t.Helper()
	keys, err := s.readAddrs()
	if err != nil {
		t.Fatal(err)
	}
	return steerAddrs(keys)
}

// Connections to a steered address and port, from the node and from
// outside, reach the proxy's listener; other addresses and ports are left
// alone; SetAddrs and SetListener take effect at once; a closed listener
// leaves its port refused.
func TestSteering(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	node, out := newNS(t, "node"), newNS(t, "out")
	nodeIP, outIP := linkNS(t, node, out, 205)
	lo := randAddrs(3)
	lbIP, otherIP, lateIP := lo[0], lo[1], lo[2]
	addLo(t, node, lbIP, otherIP, lateIP)
	run(t, "ip", "-n", out.name, "route", "add", "default", "via", nodeIP.String())

	s := openSteering(t, SteerConfig{NetNS: node.path()})
	px, ln := proxy(t, node, "proxy")
	// Something the program must leave alone: a server on port 81 of every
	// address.
	startTCP(t, node, "plain", netip.MustParseAddrPort("0.0.0.0:81"))
	if err := s.SetListener(80, ln); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAddrs([]netip.Addr{nodeIP, lbIP}); err != nil {
		t.Fatal(err)
	}

	for _, a := range []netip.Addr{nodeIP, lbIP} {
		wantReach(t, node, ap(a, 80), "proxy")
		g := wantReach(t, out, ap(a, 80), "proxy")
		if g.client == "" || netip.MustParseAddrPort(g.client).Addr() != outIP {
			t.Errorf("proxy saw the outside client as %q, want %s", g.client, outIP)
		}
		if g.peer != ap(a, 80).String() {
			t.Errorf("outside client's peer is %s, want %s", g.peer, ap(a, 80))
		}
		wantReach(t, out, ap(a, 81), "plain")
		wantRefused(t, out, ap(a, 443))
	}
	wantRefused(t, node, ap(otherIP, 80))
	wantRefused(t, out, ap(otherIP, 80))
	wantReach(t, node, ap(otherIP, 81), "plain")
	// The listener's own address is not steered, but it is its address.
	wantReach(t, node, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ln.Addr().(*net.TCPAddr).AddrPort().Port()), "proxy")
	wantRefused(t, node, ap(netip.MustParseAddr("127.0.0.1"), 80))

	// A second port, to another listener.
	_, tls := proxy(t, node, "proxy-tls")
	if err := s.SetListener(443, tls); err != nil {
		t.Fatal(err)
	}
	wantReach(t, out, ap(nodeIP, 443), "proxy-tls")
	wantReach(t, out, ap(lbIP, 80), "proxy")

	// An address added later is steered at once; removed ones are not.
	if err := s.SetAddrs([]netip.Addr{nodeIP, lbIP, lateIP}); err != nil {
		t.Fatal(err)
	}
	wantReach(t, node, ap(lateIP, 80), "proxy")
	wantReach(t, out, ap(lateIP, 443), "proxy-tls")
	if err := s.SetAddrs([]netip.Addr{lateIP, nodeIP}); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, out, ap(lbIP, 80))
	wantReach(t, out, ap(lateIP, 80), "proxy")
	if diff := cmp.Diff(steerAddrs([]uint32{steerAddrKey(nodeIP), steerAddrKey(lateIP)}), steeredAddrs(t, s), addrCmp); diff != "" {
		t.Errorf("steered addresses (-want +got):\n%s", diff)
	}
	// An invalid list changes nothing.
	if err := s.SetAddrs([]netip.Addr{lbIP, netip.MustParseAddr("fd00::1")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetAddrs with an IPv6 address: %v, want ErrInvalid", err)
	}
	wantRefused(t, out, ap(lbIP, 80))

	// SetListener replaces the port's listener.
	px2, ln2 := proxy(t, node, "proxy2")
	if err := s.SetListener(80, ln2); err != nil {
		t.Fatal(err)
	}
	wantReach(t, out, ap(nodeIP, 80), "proxy2")
	px.close()
	wantReach(t, node, ap(nodeIP, 80), "proxy2")

	// The listener goes away: its port is refused, not steered elsewhere
	// nor hung; the other port is still steered.
	px2.close()
	wantRefused(t, out, ap(nodeIP, 80))
	wantRefused(t, node, ap(lateIP, 80))
	wantReach(t, out, ap(nodeIP, 443), "proxy-tls")
}

// An agent restart: Close leaves steering working, the proxy's exit leaves
// the port refused, OpenSteering finds the same pins (with the addresses)
// and a new listener takes the port. Remove leaves nothing behind.
func TestSteeringRestart(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	node := newNS(t, "node")
	addr := randAddrs(1)[0]
	addLo(t, node, addr)
	cfg := SteerConfig{Node: "ebpftest-" + randHex(4), NetNS: node.path(), Log: testLogger(t)}
	dir := filepath.Join(DefaultPinRoot, cfg.Node)

	s := openSteering(t, cfg)
	px, ln := proxy(t, node, "first")
	if err := s.SetListener(80, ln); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAddrs([]netip.Addr{addr}); err != nil {
		t.Fatal(err)
	}
	before := pinnedIDs(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAddrs(nil); err == nil {
		t.Error("SetAddrs after Close succeeded")
	}
	wantReach(t, node, ap(addr, 80), "first")
	px.close()
	wantRefused(t, node, ap(addr, 80))

	s2 := openSteering(t, cfg)
	if diff := cmp.Diff(before, pinnedIDs(t, dir)); diff != "" {
		t.Errorf("pinned objects after reopening (-before +after):\n%s", diff)
	}
	_, ln2 := proxy(t, node, "second")
	if err := s2.SetListener(80, ln2); err != nil {
		t.Fatal(err)
	}
	wantReach(t, node, ap(addr, 80), "second")

	// Attaching the same again changes nothing either.
	s3, err := OpenSteering(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, pinnedIDs(t, dir)); diff != "" {
		t.Errorf("pinned objects after opening twice (-before +after):\n%s", diff)
	}

	linkID := linkIDOf(t, s2.link)
	if err := s2.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory after Remove: %v", err)
	}
	if l, err := link.NewFromID(linkID); err == nil {
		l.Close()
		t.Errorf("link %d still exists", linkID)
	}
	wantRefused(t, node, ap(addr, 80))
}

func linkIDOf(t testing.TB, l link.Link) link.ID {
	t.Helper()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

// A new object replaces the attached program through the same link; the
// maps (with the listener and addresses) stay.
func TestSteeringReplacesChangedProgram(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	node := newNS(t, "node")
	addr := randAddrs(1)[0]
	addLo(t, node, addr)
	cfg := SteerConfig{Node: "ebpftest-" + randHex(4), NetNS: node.path(), Log: testLogger(t)}
	s := openSteering(t, cfg)
	_, ln := proxy(t, node, "proxy")
	if err := s.SetListener(443, ln); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAddrs([]netip.Addr{addr}); err != nil {
		t.Fatal(err)
	}
	linkID, oldProg := linkIDOf(t, s.link), progID(s.objs.Steer4Lookup)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	p := spec.Programs[steerProgSteer4Lookup]
	first := p.Instructions[0]
	nop := asm.Mov.Reg(asm.R1, asm.R1)
	nop.Metadata, first.Metadata = first.Metadata, asm.Metadata{}
	p.Instructions = append(asm.Instructions{nop, first}, p.Instructions[1:]...)
	s2, err := openSteeringSpec(cfg, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	info, err := s2.link.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != linkID || info.Program == oldProg || info.Program != progID(s2.objs.Steer4Lookup) {
		t.Errorf("link %d runs program %d; want link %d running the new program %d (was %d)",
			info.ID, info.Program, linkID, progID(s2.objs.Steer4Lookup), oldProg)
	}
	wantReach(t, node, ap(addr, 443), "proxy")
}

// Nodes in separate namespaces steer their own connections with their own
// pins, even to the same address.
func TestSteeringPerNamespace(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	addr := randAddrs(1)[0]
	var nodes []*ns
	for _, name := range []string{"a", "b"} {
		n := newNS(t, name)
		addLo(t, n, addr)
		s := openSteering(t, SteerConfig{NetNS: n.path()})
		_, ln := proxy(t, n, "proxy-"+name)
		if err := s.SetListener(80, ln); err != nil {
			t.Fatal(err)
		}
		if err := s.SetAddrs([]netip.Addr{addr}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	wantReach(t, nodes[0], ap(addr, 80), "proxy-a")
	wantReach(t, nodes[1], ap(addr, 80), "proxy-b")
}

// SetListener takes listening TCP sockets that accept IPv4 connections.
func TestSteerListenerKinds(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	node := newNS(t, "node")
	addr := randAddrs(1)[0]
	addLo(t, node, addr)
	s := openSteering(t, SteerConfig{NetNS: node.path()})
	if err := s.SetAddrs([]netip.Addr{addr}); err != nil {
		t.Fatal(err)
	}

	// A dual-stack socket (Go's "tcp" on ":0") takes IPv4 connections.
	var dual *net.TCPListener
	if err := node.do(func() (err error) {
		dual, err = ListenSteerable(t.Context(), "tcp", ":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer dual.Close()
	if err := s.SetListener(8080, dual); err != nil {
		t.Fatalf("dual-stack listener: %v", err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := dual.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	if err := node.do(func() error {
		c, err := net.DialTimeout("tcp4", ap(addr, 8080).String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Errorf("connect through the dual-stack listener: %v", err)
	} else if err := <-accepted; err != nil {
		t.Errorf("accept: %v", err)
	}

	// Go's default listener is Multipath TCP where the kernel has it:
	// refused with a reason.
	var mptcp *net.TCPListener
	if err := node.do(func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err == nil {
			mptcp = ln.(*net.TCPListener)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !isMPTCP(t, mptcp) {
		t.Logf("no Multipath TCP here, not checking an MPTCP listener")
	} else if err := s.SetListener(80, mptcp); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Multipath") {
		t.Errorf("MPTCP listener: %v, want ErrInvalid naming Multipath TCP", err)
	}
	mptcp.Close()

	// An IPv6-only one does not.
	var v6 *net.TCPListener
	if err := node.do(func() (err error) {
		v6, err = ListenSteerable(t.Context(), "tcp6", "[::1]:0")
		return err
	}); err != nil {
		t.Logf("no IPv6 in the namespace, not checking an IPv6-only listener: %v", err)
	} else {
		if err := s.SetListener(80, v6); !errors.Is(err, ErrInvalid) {
			t.Errorf("IPv6-only listener: %v, want ErrInvalid", err)
		}
		v6.Close()
	}

	_, ln := proxy(t, node, "proxy")
	if err := s.SetListener(0, ln); !errors.Is(err, ErrInvalid) {
		t.Errorf("port 0: %v, want ErrInvalid", err)
	}
	if err := s.SetListener(80, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("no listener: %v, want ErrInvalid", err)
	}
	ln.Close()
	if err := s.SetListener(80, ln); err == nil {
		t.Error("closed listener accepted")
	}
	wantRefused(t, node, ap(addr, 80))
}

// UnpinSteering leaves the load balancer of the same node alone.
func TestUnpinSteeringKeepsLB(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	node := newNS(t, "node")
	cfg := Config{Node: "ebpftest-" + randHex(4), CgroupPath: testCgroup(t)}
	lb := openLB(t, cfg)
	scfg := SteerConfig{Node: cfg.Node, NetNS: node.path(), Log: testLogger(t)}
	s := openSteering(t, scfg)
	dir := filepath.Join(DefaultPinRoot, cfg.Node)
	for _, pin := range []string{steerLinkPin, steerMapSteer4Addrs, steerMapSteer4Socks, lbMapLb4Services} {
		if _, err := os.Stat(filepath.Join(dir, pin)); err != nil {
			t.Errorf("pin %s: %v", pin, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := UnpinSteering(scfg); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "steer4_") || e.Name() == steerLinkPin {
			t.Errorf("%s still pinned", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, lbMapLb4Services)); err != nil {
		t.Errorf("load balancer pins: %v", err)
	}
	mustSync(t, lb, Service{Name: "test/web", Addr: serviceAddr(), Port: 80, Protocol: TCP})
}

func isMPTCP(t testing.TB, ln *net.TCPListener) bool {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var proto int
	if err := rc.Control(func(fd uintptr) {
		proto, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return proto == unix.IPPROTO_MPTCP
}
