package network

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netns"
)

// requireRoot skips a test that needs root, except in CI where it fails.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("test needs root (network namespaces, bridges, iptables); CI must run it as root")
	}
	t.Skip("test needs root (network namespaces, bridges, iptables)")
}

// testConfig returns a Config private to one test: its own node, bridge,
// 10.201.<n>.0/<prefix> CIDR, data and run directories.
func testConfig(t testing.TB, n int, prefix int) Config {
	t.Helper()
	return Config{
		Node:        fmt.Sprintf("nettest-%d", n),
		DataDir:     t.TempDir(),
		PodCIDR:     fmt.Sprintf("10.201.%d.0/%d", n, prefix),
		BridgeName:  fmt.Sprintf("kbtest%d", n),
		NetworkName: fmt.Sprintf("kbtest%d", n),
		RunDir:      filepath.Join(t.TempDir(), "netns"),
	}
}

// newTestManager creates a Manager and registers a cleanup that removes
// everything the test may have left: sandboxes, netns mounts and the bridge.
func newTestManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	m, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if sbs, err := m.Sandboxes(); err == nil {
			for _, sb := range sbs {
				if err := m.Teardown(ctx, sb.Pod); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}
		}
		_ = m.Close()
		if entries, err := os.ReadDir(m.cfg.RunDir); err == nil {
			for _, e := range entries {
				_ = removeNetNS(filepath.Join(m.cfg.RunDir, e.Name()))
			}
		}
		if err := RemoveNode(m.cfg); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return m
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

// inNetNS runs fn on a locked OS thread inside the network namespace at path.
// Sockets created by fn stay in that namespace after it returns.
func inNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("restore thread namespace: %w (thread left locked)", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// serveGreeting listens on addr inside the namespace and answers every
// connection with greeting. The server stops at the end of the test.
func serveGreeting(t testing.TB, nsPath, addr, greeting string) {
	t.Helper()
	var ln net.Listener
	err := inNetNS(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, nsPath, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, greeting)
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
}

// readGreeting connects to addr (from nsPath, or from the host when nsPath is
// empty) and returns what the server sent.
func readGreeting(nsPath, addr string) (string, error) {
	var c net.Conn
	dial := func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}
	var err error
	if nsPath == "" {
		err = dial()
	} else {
		err = inNetNS(nsPath, dial)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// allocations lists host-local's allocated IPs of the manager's network.
func allocations(t testing.TB, m *Manager) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(m.cfg.ipamDir(), m.cfg.NetworkName))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// bridgePorts lists the interfaces attached to the manager's bridge.
func bridgePorts(t testing.TB, m *Manager) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("/sys/class/net", m.cfg.BridgeName, "brif"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// iptablesMentions returns the nat and filter rules that mention any of the pod UIDs
// or their per-pod chains.
func iptablesMentions(t testing.TB, m *Manager, uids ...string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var hits []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, uid := range uids {
			if strings.Contains(line, uid) || strings.Contains(line, bridgeMasqChain(m.cfg.NetworkName, uid)) {
				hits = append(hits, line)
			}
		}
	}
	return hits
}

// assertClean checks that no trace of the pods is left on the node.
func assertClean(t testing.TB, m *Manager, uids ...string) {
	t.Helper()
	if entries, _ := os.ReadDir(m.cfg.RunDir); len(entries) > 0 {
		t.Errorf("netns files left in %s: %v", m.cfg.RunDir, entries)
	}
	if ports := bridgePorts(t, m); len(ports) > 0 {
		t.Errorf("veths left on bridge %s: %v", m.cfg.BridgeName, ports)
	}
	if ips := allocations(t, m); len(ips) > 0 {
		t.Errorf("host-local allocations left: %v", ips)
	}
	if entries, _ := os.ReadDir(filepath.Join(m.cfg.cacheDir(), "results")); len(entries) > 0 {
		t.Errorf("CNI cache entries left: %v", entries)
	}
	if hits := iptablesMentions(t, m, uids...); len(hits) > 0 {
		t.Errorf("iptables rules left:\n%s", strings.Join(hits, "\n"))
	}
	sbs, err := m.Sandboxes()
	if err != nil {
		t.Fatal(err)
	}
	if len(sbs) > 0 {
		t.Errorf("Sandboxes() = %v, want none", sbs)
	}
}

// nodeIP returns a non-loopback IPv4 address of the host.
func nodeIP(t testing.TB) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() || strings.HasPrefix(ipn.IP.String(), "10.201.") {
			continue
		}
		return ipn.IP
	}
	t.Skip("no non-loopback IPv4 address on the node")
	return nil
}

// freePort returns a TCP port that is free on the host right now.
func freePort(t testing.TB) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// cachedPlugins lists the plugin types of the configuration libcni cached
// when it wired the pod: the list its DEL will run.
func cachedPlugins(t *testing.T, m *Manager, uid string) []string {
	t.Helper()
	conf, _, err := m.cni.GetNetworkListCachedConfig(m.list, &libcni.RuntimeConf{ContainerID: uid, IfName: podInterface})
	if err != nil || conf == nil {
		t.Fatalf("cached CNI configuration of %s: %v (found: %t)", uid, err, conf != nil)
	}
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
	}
	return types
}
