package ebpf

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Root tests build their own network: a bridge with "pods" (network
// namespaces on veths) in 10.202.0.0/16 (/28 each), links to "outside"
// namespaces in 10.203.0.0/16 and 10.204.0.0/16 (/30 each), and service
// addresses in 10.200.0.0/16, all chosen at random per test so that tests
// of this package, run in parallel, and of other checkouts do not collide.
// Names carry a random suffix; everything is removed in t.Cleanup.

// requireRoot skips a test that needs root, except in CI where it fails.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("test needs root (BPF, network namespaces, cgroups); CI must run it as root")
	}
	t.Skip("test needs root (BPF, network namespaces, cgroups)")
}

func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randByte() byte {
	var b [1]byte
	rand.Read(b[:])
	return b[0]
}

// run runs a command (ip, iptables-restore, ...) and fails the test on error.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// usedAddrs returns the IPv4 addresses of the host's interfaces.
func usedAddrs(t testing.TB) []netip.Prefix {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				out = append(out, p)
			}
		}
	}
	return out
}

// freePrefix picks a random free /bits prefix in 10.<second>.0.0/16.
func freePrefix(t testing.TB, second byte, bits int) netip.Prefix {
	t.Helper()
	for range 100 {
		var b [2]byte
		rand.Read(b[:])
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, second, b[0], b[1]}), bits).Masked()
		free := true
		for _, u := range usedAddrs(t) {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p
		}
	}
	t.Fatal("no free prefix")
	return netip.Prefix{}
}

// serviceAddr returns a random address in 10.200.0.0/16.
func serviceAddr() netip.Addr {
	return netip.AddrFrom4([4]byte{10, 200, randByte(), randByte() | 1})
}

func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// ns is a named network namespace.
type ns struct {
	name   string
	handle netns.NsHandle
}

func newNS(t testing.TB, role string) *ns {
	t.Helper()
	name := "kbe-" + randHex(4) + "-" + role
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return &ns{name: name, handle: h}
}

// do runs f on a thread inside the namespace; sockets f creates live there.
// A nil ns is the host's.
func (n *ns) do(f func() error) error {
	if n == nil {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is not unlocked if switching back fails: it then
		// ends with the goroutine instead of serving others.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(n.handle); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// podNet is a bridge on the host with pods on it.
type podNet struct {
	bridge string
	cidr   netip.Prefix // /28: .1 is the bridge, pods from .2
	gw     netip.Addr
	pods   int
}

func newPodNet(t testing.TB) *podNet {
	t.Helper()
	pn := &podNet{bridge: "kbe" + randHex(4), cidr: freePrefix(t, 202, 28)}
	pn.gw = nth(pn.cidr, 1)
	run(t, "ip", "link", "add", pn.bridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", pn.bridge).Run() })
	run(t, "ip", "addr", "add", netip.PrefixFrom(pn.gw, 28).String(), "dev", pn.bridge)
	run(t, "ip", "link", "set", pn.bridge, "up")
	return pn
}

// pod is a namespace on the pod network.
type pod struct {
	*ns
	ip netip.Addr
}

func (pn *podNet) addPod(t testing.TB) *pod {
	t.Helper()
	pn.pods++
	p := &pod{ns: newNS(t, fmt.Sprintf("p%d", pn.pods)), ip: nth(pn.cidr, 1+pn.pods)}
	host := fmt.Sprintf("%sp%d", pn.bridge, pn.pods)
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", p.name)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	run(t, "ip", "link", "set", host, "master", pn.bridge, "up")
	run(t, "ip", "-n", p.name, "addr", "add", netip.PrefixFrom(p.ip, 28).String(), "dev", "eth0")
	run(t, "ip", "-n", p.name, "link", "set", "eth0", "up")
	run(t, "ip", "-n", p.name, "route", "add", "default", "via", pn.gw.String())
	return p
}

// outside is a namespace linked to the host by a veth pair: the host side
// (hostIf, hostIP) is an external interface of the node.
type outside struct {
	*ns
	hostIf string
	hostIP netip.Addr
	ip     netip.Addr
}

func newOutside(t testing.TB, second byte, role string) *outside {
	t.Helper()
	p := freePrefix(t, second, 30)
	o := &outside{ns: newNS(t, role), hostIf: "kbe" + randHex(4) + "o", hostIP: nth(p, 1), ip: nth(p, 2)}
	run(t, "ip", "link", "add", o.hostIf, "type", "veth", "peer", "name", "eth0", "netns", o.name)
	t.Cleanup(func() { exec.Command("ip", "link", "del", o.hostIf).Run() })
	run(t, "ip", "addr", "add", netip.PrefixFrom(o.hostIP, 30).String(), "dev", o.hostIf)
	run(t, "ip", "link", "set", o.hostIf, "up")
	run(t, "ip", "-n", o.name, "addr", "add", netip.PrefixFrom(o.ip, 30).String(), "dev", "eth0")
	run(t, "ip", "-n", o.name, "link", "set", "eth0", "up")
	return o
}

// server is a backend: TCP greets each connection with "<name> <client
// address>\n" and then echoes; UDP answers each datagram with the same line.
type server struct {
	name string
	ln   net.Listener
	pc   net.PacketConn
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

func startTCP(t testing.TB, n *ns, name string, addr netip.AddrPort) *server {
	t.Helper()
	var ln net.Listener
	err := n.do(func() (err error) {
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return serveTCP(t, name, ln)
}

// serveTCP serves ln as startTCP does.
func serveTCP(t testing.TB, name string, ln net.Listener) *server {
	s := &server{name: name, ln: ln, open: map[net.Conn]bool{}}
	s.wg.Go(func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open[c] = true
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					s.mu.Lock()
					delete(s.open, c)
					s.mu.Unlock()
					c.Close()
				}()
				if _, err := fmt.Fprintf(c, "%s %s\n", s.name, c.RemoteAddr()); err != nil {
					return
				}
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(s.close)
	return s
}

func startUDP(t testing.TB, n *ns, name string, addr netip.AddrPort) *server {
	t.Helper()
	s := &server{name: name}
	err := n.do(func() (err error) {
		s.pc, err = net.ListenPacket("udp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := s.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.pc.WriteTo(fmt.Appendf(nil, "%s %s\n", s.name, from), from)
		}
	})
	t.Cleanup(s.close)
	return s
}

func (s *server) close() {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.pc != nil {
		s.pc.Close()
	}
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// greeting is what a backend said to one connection.
type greeting struct {
	backend string // its name
	client  string // the client address it saw
	peer    string // the peer the client's socket reports (getpeername)
}

// greet connects to addr and reads the backend's greeting.
func greet(addr netip.AddrPort) (greeting, error) {
	c, err := net.DialTimeout("tcp4", addr.String(), 2*time.Second)
	if err != nil {
		return greeting{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return greeting{}, fmt.Errorf("read greeting from %s: %w", addr, err)
	}
	backend, client, _ := strings.Cut(strings.TrimSpace(line), " ")
	return greeting{backend: backend, client: client, peer: c.RemoteAddr().String()}, nil
}

// greetMany makes n connections to addr from n (nil: the host) and counts
// the backends that answered; it fails the test on the first error.
func greetMany(t testing.TB, from *ns, addr netip.AddrPort, count int) map[string]int {
	t.Helper()
	got := map[string]int{}
	err := from.do(func() error {
		for range count {
			g, err := greet(addr)
			if err != nil {
				return err
			}
			if g.peer != addr.String() {
				return fmt.Errorf("connection to %s reports peer %s", addr, g.peer)
			}
			got[g.backend]++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("connect to %s: %v (so far %v)", addr, err, got)
	}
	return got
}

// testCgroup creates an empty cgroup v2 directory, for load balancers whose
// socket programs must affect no process of the test.
func testCgroup(t testing.TB) string {
	t.Helper()
	root, err := cgroupPath("")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "keelson-ebpf-test-"+randHex(4))
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	return path
}

// openLB opens a load balancer for a node of its own and removes it (and
// anything pinned for the node) at the end of the test.
func openLB(t testing.TB, cfg Config) *LB {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "ebpftest-" + randHex(4)
	}
	if cfg.Log == nil {
		cfg.Log = testLogger(t)
	}
	t.Cleanup(func() {
		if err := Unpin(cfg); err != nil {
			t.Errorf("unpin: %v", err)
		}
	})
	lb, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := lb.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return lb
}

func mustSync(t testing.TB, lb *LB, svcs ...Service) {
	t.Helper()
	if err := lb.Sync(svcs); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}
