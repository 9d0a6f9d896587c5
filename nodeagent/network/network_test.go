package network

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func pod(name string) PodRef {
	return PodRef{UID: "uid-" + name, Namespace: "default", Name: name}
}

func TestPodsReachEachOtherAndNode(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	m := newTestManager(t, testConfig(t, 1, 24))
	_, cidr, _ := net.ParseCIDR("10.201.1.0/24")

	a, err := m.Setup(ctx, pod("a"), nil)
	if err != nil {
		t.Fatalf("Setup a: %v", err)
	}
	b, err := m.Setup(ctx, pod("b"), nil)
	if err != nil {
		t.Fatalf("Setup b: %v", err)
	}
	if a.IP.Equal(b.IP) || !cidr.Contains(a.IP) || !cidr.Contains(b.IP) {
		t.Fatalf("IPs %s and %s: want distinct addresses in %s", a.IP, b.IP, cidr)
	}
	if !a.Gateway.Equal(net.ParseIP("10.201.1.1")) || a.Interface != "eth0" {
		t.Errorf("sandbox a = %+v, want gateway 10.201.1.1 on eth0", a)
	}
	if !isNetNS(a.NetNSPath) {
		t.Errorf("%s is not a network namespace", a.NetNSPath)
	}

	serveGreeting(t, b.NetNSPath, ":8080", "hello from b")
	serveGreeting(t, a.NetNSPath, ":8080", "hello from a")
	// Pod to pod.
	if got, err := readGreeting(a.NetNSPath, net.JoinHostPort(b.IP.String(), "8080")); err != nil || got != "hello from b" {
		t.Errorf("a → b: got %q, %v", got, err)
	}
	// Node to pod.
	if got, err := readGreeting("", net.JoinHostPort(a.IP.String(), "8080")); err != nil || got != "hello from a" {
		t.Errorf("node → a: got %q, %v", got, err)
	}
	// Pod to itself over loopback (lo is up).
	if got, err := readGreeting(a.NetNSPath, "127.0.0.1:8080"); err != nil || got != "hello from a" {
		t.Errorf("a → localhost: got %q, %v", got, err)
	}
	// Hairpin: a pod reaching its own IP.
	if got, err := readGreeting(a.NetNSPath, net.JoinHostPort(a.IP.String(), "8080")); err != nil || got != "hello from a" {
		t.Errorf("a → a's IP: got %q, %v", got, err)
	}

	if got := len(bridgePorts(t, m)); got != 2 {
		t.Errorf("bridge has %d ports, want 2", got)
	}
	for _, p := range []PodRef{pod("a"), pod("b")} {
		if err := m.Teardown(ctx, p); err != nil {
			t.Fatalf("Teardown %s: %v", p, err)
		}
	}
	assertClean(t, m, pod("a").UID, pod("b").UID)
}

func TestHostPort(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	m := newTestManager(t, testConfig(t, 2, 24))
	hostPort := freePort(t)
	p := pod("web")
	sb, err := m.Setup(ctx, p, []PortMapping{{HostPort: hostPort, ContainerPort: 8080, Protocol: "TCP"}})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	serveGreeting(t, sb.NetNSPath, ":8080", "hello via hostPort")
	port := strconv.Itoa(int(hostPort))
	for _, host := range []string{nodeIP(t).String(), "127.0.0.1"} {
		if got, err := readGreeting("", net.JoinHostPort(host, port)); err != nil || got != "hello via hostPort" {
			t.Errorf("node → %s:%s: got %q, %v", host, port, got, err)
		}
	}
	// From another pod, through the node's address.
	other, err := m.Setup(ctx, pod("client"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readGreeting(other.NetNSPath, net.JoinHostPort(nodeIP(t).String(), port)); err != nil || got != "hello via hostPort" {
		t.Errorf("pod → node:%s: got %q, %v", port, got, err)
	}

	// Only the pod with host ports was wired (and so is deleted) with portmap.
	if got := cachedPlugins(t, m, p.UID); !slices.Equal(got, []string{"bridge", "portmap"}) {
		t.Errorf("pod with a host port wired with %v, want [bridge portmap]", got)
	}
	if got := cachedPlugins(t, m, pod("client").UID); !slices.Equal(got, []string{"bridge"}) {
		t.Errorf("pod without host ports wired with %v, want [bridge]", got)
	}

	// A second pod cannot have the same host port.
	_, err = m.Setup(ctx, pod("web2"), []PortMapping{{HostPort: hostPort, ContainerPort: 80}})
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), port) {
		t.Errorf("Setup of a second pod on host port %s: %v, want ErrPortInUse naming the port", port, err)
	}

	for _, p := range []PodRef{p, pod("client"), pod("web2")} {
		if err := m.Teardown(ctx, p); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
	}
	assertClean(t, m, p.UID, pod("client").UID, pod("web2").UID)
	// The port is free again.
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		t.Errorf("host port %s not released: %v", port, err)
	} else {
		ln.Close()
	}
}

func TestHostPortTakenByProcess(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	m := newTestManager(t, testConfig(t, 3, 24))
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := int32(ln.Addr().(*net.TCPAddr).Port)

	_, err = m.Setup(ctx, pod("p"), []PortMapping{{HostPort: taken, ContainerPort: 80}})
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Setup = %v, want ErrPortInUse", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(int(taken))) || !strings.Contains(err.Error(), "default/p") {
		t.Errorf("error %q does not name the port and the pod", err)
	}
	assertClean(t, m, pod("p").UID)
}

func TestIPExhausted(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	m := newTestManager(t, testConfig(t, 4, 29))
	// A /29 has 6 usable addresses; the gateway takes one.
	var pods []PodRef
	for i := range 5 {
		p := pod(fmt.Sprintf("p%d", i))
		if _, err := m.Setup(ctx, p, nil); err != nil {
			t.Fatalf("Setup %s: %v", p, err)
		}
		pods = append(pods, p)
	}
	extra := pod("extra")
	_, err := m.Setup(ctx, extra, nil)
	if !errors.Is(err, ErrIPExhausted) || !strings.Contains(err.Error(), "10.201.4.0/29") {
		t.Fatalf("Setup of a 6th pod in a /29 = %v, want ErrIPExhausted naming the CIDR", err)
	}
	if fileExists(m.NetNSPath(extra.UID)) {
		t.Errorf("netns of the failed pod left behind")
	}
	if got := len(bridgePorts(t, m)); got != 5 {
		t.Errorf("bridge has %d ports, want 5", got)
	}
	if got := len(allocations(t, m)); got != 5 {
		t.Errorf("%d allocations, want 5", got)
	}
	// Freeing one address makes room again.
	if err := m.Teardown(ctx, pods[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Setup(ctx, extra, nil); err != nil {
		t.Fatalf("Setup after a teardown: %v", err)
	}
	for _, p := range append(pods[1:], extra) {
		if err := m.Teardown(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	assertClean(t, m, pods[0].UID, extra.UID)
}

func TestSetupIsIdempotent(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	m := newTestManager(t, testConfig(t, 5, 24))
	p := pod("idem")
	first, err := m.Setup(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := m.Setup(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !first.IP.Equal(second.IP) || first.NetNSPath != second.NetNSPath {
		t.Errorf("second Setup = %+v, want %+v", second, first)
	}
	if got := allocations(t, m); len(got) != 1 {
		t.Errorf("allocations = %v, want one", got)
	}
	if got := len(bridgePorts(t, m)); got != 1 {
		t.Errorf("bridge has %d ports, want 1", got)
	}
	// Break the sandbox (delete the pod's interface): Setup repairs it and keeps the IP.
	if err := nsenter(first.NetNSPath, "ip", "link", "del", "eth0"); err != nil {
		t.Fatal(err)
	}
	third, err := m.Setup(ctx, p, nil)
	if err != nil {
		t.Fatalf("Setup of a broken sandbox: %v", err)
	}
	if !third.IP.Equal(first.IP) {
		t.Errorf("repaired sandbox has IP %s, want %s", third.IP, first.IP)
	}
	serveGreeting(t, third.NetNSPath, ":8080", "repaired")
	if got, err := readGreeting("", net.JoinHostPort(third.IP.String(), "8080")); err != nil || got != "repaired" {
		t.Errorf("node → repaired pod: %q, %v", got, err)
	}
	if err := m.Teardown(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(ctx, p); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	assertClean(t, m, p.UID)
}

func TestRestartAdoptsSandboxes(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	cfg := testConfig(t, 6, 24)
	m1 := newTestManager(t, cfg)
	p := pod("survivor")
	hostPort := freePort(t)
	sb, err := m1.Setup(ctx, p, []PortMapping{{HostPort: hostPort, ContainerPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	vethsBefore := bridgePorts(t, m1)
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}

	m2 := newTestManager(t, cfg)
	sbs, err := m2.Sandboxes()
	if err != nil {
		t.Fatal(err)
	}
	if len(sbs) != 1 || sbs[0].Pod != p || !sbs[0].IP.Equal(sb.IP) || !sbs[0].NetNS || sbs[0].NetNSPath != sb.NetNSPath {
		t.Fatalf("Sandboxes() = %+v, want %v with IP %s", sbs, p, sb.IP)
	}
	// The new manager holds the pod's host port again.
	if _, err := m2.Setup(ctx, pod("thief"), []PortMapping{{HostPort: hostPort, ContainerPort: 80}}); !errors.Is(err, ErrPortInUse) {
		t.Errorf("Setup of another pod on the adopted host port = %v, want ErrPortInUse", err)
	}
	again, err := m2.Setup(ctx, p, []PortMapping{{HostPort: hostPort, ContainerPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	if !again.IP.Equal(sb.IP) {
		t.Errorf("adopted IP %s, want %s", again.IP, sb.IP)
	}
	if got := bridgePorts(t, m2); !slices.Equal(got, vethsBefore) {
		t.Errorf("veths after adoption %v, want unchanged %v (no second ADD)", got, vethsBefore)
	}
	serveGreeting(t, again.NetNSPath, ":8080", "adopted")
	if got, err := readGreeting("", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hostPort)))); err != nil || got != "adopted" {
		t.Errorf("node → adopted pod's host port: %q, %v", got, err)
	}
	if err := m2.Teardown(ctx, p); err != nil {
		t.Fatal(err)
	}
	assertClean(t, m2, p.UID, pod("thief").UID)
}

func TestTeardownAfterNetNSRemoved(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	m := newTestManager(t, testConfig(t, 7, 24))
	p := pod("orphan")
	sb, err := m.Setup(ctx, p, []PortMapping{{HostPort: freePort(t), ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	// Someone removes the namespace by hand (or the node rebooted).
	if err := unix.Unmount(sb.NetNSPath, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sb.NetNSPath); err != nil {
		t.Fatal(err)
	}
	sbs, err := m.Sandboxes()
	if err != nil {
		t.Fatal(err)
	}
	if len(sbs) != 1 || sbs[0].NetNS || !sbs[0].IP.Equal(sb.IP) {
		t.Errorf("Sandboxes() = %+v, want the pod with IP %s and no netns", sbs, sb.IP)
	}
	if err := m.Teardown(ctx, p); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if err := m.Teardown(ctx, p); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	assertClean(t, m, p.UID)
}

func TestSetupRejectsBadInput(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	m := newTestManager(t, testConfig(t, 8, 24))
	tests := []struct {
		name  string
		pod   PodRef
		ports []PortMapping
	}{
		{"uid with slash", PodRef{UID: "a/b", Name: "x"}, nil},
		{"empty uid", PodRef{Name: "x"}, nil},
		{"bad protocol", pod("x"), []PortMapping{{HostPort: 80, ContainerPort: 80, Protocol: "icmp"}}},
		{"host port out of range", pod("x"), []PortMapping{{HostPort: 70000, ContainerPort: 80}}},
		{"bad host IP", pod("x"), []PortMapping{{HostPort: 8080, ContainerPort: 80, HostIP: "nope"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Setup(ctx, tt.pod, tt.ports); !errors.Is(err, ErrInvalidPod) {
				t.Errorf("Setup = %v, want ErrInvalidPod", err)
			}
		})
	}
	assertClean(t, m, pod("x").UID)
}

// nsenter runs a command in the network namespace at path.
func nsenter(path string, args ...string) error {
	out, err := exec.Command("nsenter", append([]string{"--net=" + path}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nsenter %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func TestConcurrentPods(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	m := newTestManager(t, testConfig(t, 12, 24))
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ips  = map[string]string{}
		errs []error
	)
	for i := range n {
		wg.Go(func() {
			p := pod(fmt.Sprintf("c%d", i))
			sb, err := m.Setup(ctx, p, []PortMapping{{HostPort: 0, ContainerPort: 80}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ips[sb.IP.String()] = p.UID
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent Setup: %v", errors.Join(errs...))
	}
	if len(ips) != n {
		t.Errorf("%d distinct IPs for %d pods: %v", len(ips), n, ips)
	}
	var uids []string
	for i := range n {
		p := pod(fmt.Sprintf("c%d", i))
		uids = append(uids, p.UID)
		wg.Go(func() {
			if err := m.Teardown(ctx, p); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent Teardown: %v", errors.Join(errs...))
	}
	assertClean(t, m, uids...)
}

// What a pod sends beyond the pod network leaves with the node's address:
// a host outside, which has no route back to the pod CIDR, sees the node.
// The node's masquerade chain goes with RemoveNode.
func TestPodTrafficBeyondTheNodeIsMasqueraded(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	cfg := testConfig(t, 9, 24)
	m := newTestManager(t, cfg)

	// The outside host: a network namespace behind a veth, 10.201.254.0/30.
	ns := fmt.Sprintf("kbtest-out-%d", os.Getpid())
	hostIf, outIf := "kbtout9", "kbtout9p"
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", hostIf, "type", "veth", "peer", "name", outIf},
		{"link", "set", outIf, "netns", ns},
		{"addr", "add", "10.201.254.1/30", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", ns, "addr", "add", "10.201.254.2/30", "dev", outIf},
		{"-n", ns, "link", "set", outIf, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		}
		if args[0] == "link" && args[1] == "add" {
			t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
		}
	}
	var ln net.Listener
	if err := inNetNS("/run/netns/"+ns, func() (err error) {
		ln, err = net.Listen("tcp", "10.201.254.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, c.RemoteAddr().(*net.TCPAddr).IP.String())
			_ = c.Close()
		}
	}()

	a, err := m.Setup(ctx, pod("a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readGreeting(a.NetNSPath, ln.Addr().String()); err != nil || got != "10.201.254.1" {
		t.Errorf("the outside host saw the pod's connection from %q (%v), want the node's 10.201.254.1", got, err)
	}
	if err := m.Teardown(ctx, pod("a")); err != nil {
		t.Fatal(err)
	}
	chain := nodeMasqChain(cfg.BridgeName)
	if save, _ := exec.Command("iptables-save", "-t", "nat").Output(); !bytes.Contains(save, []byte("-j "+chain)) {
		t.Errorf("no POSTROUTING jump to %s in:\n%s", chain, save)
	}
	if err := RemoveNode(cfg); err != nil {
		t.Fatal(err)
	}
	if save, _ := exec.Command("iptables-save", "-t", "nat").Output(); bytes.Contains(save, []byte(chain)) {
		t.Errorf("%s left after RemoveNode:\n%s", chain, save)
	}
}
