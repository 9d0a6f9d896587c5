package dns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// TestServerAnswersOnAddressAddedAfterStart starts the server on the address
// of a new interface before the interface has it (as the agent may start
// before its bridge is up), then adds the address and queries.
func TestServerAnswersOnAddressAddedAfterStart(t *testing.T) {
	requireRoot(t, "creating a dummy interface")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip (iproute2) is needed: %v", err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	link := "kdns" + hex.EncodeToString(suffix) // 12 characters, under IFNAMSIZ
	// An address of 198.18.0.0/15 (benchmarking, RFC 2544) that no one routes.
	ip := netip.AddrFrom4([4]byte{198, 18 + suffix[0]%2, suffix[1], max(suffix[2], 1)})

	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// A dummy interface where the kernel has them, else a bridge without
	// ports (what the agent's own bridge is before its first pod).
	kind := "dummy"
	if err := exec.Command("ip", "link", "add", link, "type", "dummy").Run(); err != nil {
		kind = "bridge"
		run("link", "add", link, "type", "bridge")
	}
	t.Logf("%s interface %s, address %s", kind, link, ip)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "link", "del", link).CombinedOutput(); err != nil {
			t.Errorf("ip link del %s: %v\n%s", link, err, out)
		}
	})

	s, err := New(Config{Addrs: []string{netip.AddrPortFrom(ip, 0).String()}, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start on %s before the address exists: %v", ip, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	s.Update(testServices(), nil)

	run("addr", "add", ip.String()+"/32", "dev", link)
	run("link", "set", link, "up")

	for _, network := range []string{"udp", "tcp"} {
		resp := query(t, network, addr(s), "web.default.svc.cluster.local.", dns.TypeA, 0)
		want := []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}
		if diff := cmp.Diff(want, answers(resp)); diff != "" {
			t.Errorf("%s to %s (-want +got):\n%s", network, addr(s), diff)
		}
		if got := resp.Extra; len(got) != 0 {
			t.Errorf("unexpected additional records: %v", got)
		}
	}
	if got := fmt.Sprint(s.Addrs()[0].Addr()); got != ip.String() {
		t.Errorf("Addrs() = %v, want %s", s.Addrs(), ip)
	}
}
