package nodeagent

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/internal/gittest"
)

func routeNode(name, cidr, ip string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

func TestPodRoutes(t *testing.T) {
	nodes := []corev1.Node{
		routeNode("self", "10.244.0.0/24", "192.168.1.10"),
		routeNode("b", "10.244.2.0/24", "192.168.1.12"),
		routeNode("a", "10.244.1.0/24", "192.168.1.11"),
		routeNode("no-cidr", "", "192.168.1.13"),
		routeNode("no-ip", "10.244.3.0/24", ""),
		routeNode("loopback", "10.244.4.0/24", "127.0.0.1"),
	}
	got := podRoutes(nodes, "self")
	want := []PodRoute{
		{CIDR: netip.MustParsePrefix("10.244.1.0/24"), Via: netip.MustParseAddr("192.168.1.11"), Node: "a"},
		{CIDR: netip.MustParsePrefix("10.244.2.0/24"), Via: netip.MustParseAddr("192.168.1.12"), Node: "b"},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}

// TestSyncRoutes sets, changes and removes routes in a network namespace
// of its own, beside a route of someone else's that must stay.
func TestSyncRoutes(t *testing.T) {
	gittest.RequireRoot(t, "changes routes in a network namespace")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	name := fmt.Sprintf("kroutes%d", os.Getpid()%100000)
	ns, err := netns.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = netns.Set(orig)
		ns.Close()
		_ = netns.DeleteNamed(name)
	}()
	sh := func(cmd string) string {
		t.Helper()
		out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", cmd, err, out)
		}
		return string(out)
	}
	// A veth pair stands for the network the nodes share.
	sh("ip link add kr0 type veth peer name kr1 && ip addr add 192.168.7.10/24 dev kr0 && ip link set kr1 up && ip link set kr0 up && ip route add 10.9.0.0/24 via 192.168.7.99")
	r := func(cidr, via, node string) PodRoute {
		return PodRoute{CIDR: netip.MustParsePrefix(cidr), Via: netip.MustParseAddr(via), Node: node}
	}
	routes := func() string { return strings.TrimSpace(sh("ip -4 route show proto 75 | sort")) }

	if f := SyncRoutes([]PodRoute{r("10.244.1.0/24", "192.168.7.11", "a"), r("10.244.2.0/24", "192.168.7.12", "b"), r("10.244.3.0/24", "192.168.7.10", "on-this-host")}); len(f) != 0 {
		t.Fatalf("failures: %v", f)
	}
	if got, want := routes(), "10.244.1.0/24 via 192.168.7.11 dev kr0 \n10.244.2.0/24 via 192.168.7.12 dev kr0"; got != strings.TrimSpace(want) {
		t.Errorf("routes:\n%s\nwant:\n%s", got, want)
	}
	// b moved, a left, c joined from a network this host is not on.
	f := SyncRoutes([]PodRoute{r("10.244.2.0/24", "192.168.7.22", "b"), r("10.244.5.0/24", "172.31.9.9", "c")})
	if len(f) != 1 || f[0].Route.Node != "c" || !strings.Contains(f[0].Err.Error(), "not on a network this node is attached to") {
		t.Errorf("failures: %v", f)
	}
	if got, want := routes(), "10.244.2.0/24 via 192.168.7.22 dev kr0"; got != want {
		t.Errorf("routes:\n%s\nwant:\n%s", got, want)
	}
	if err := RemoveRoutes(); err != nil {
		t.Fatal(err)
	}
	if got := routes(); got != "" {
		t.Errorf("routes left: %s", got)
	}
	if !strings.Contains(sh("ip -4 route"), "10.9.0.0/24 via 192.168.7.99") {
		t.Errorf("a route the agent did not add was removed")
	}
}
