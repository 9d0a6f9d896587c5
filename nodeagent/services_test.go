package nodeagent

import (
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/ebpf"
	"github.com/keelson/keelson/internal/gittest"
)

func endpoint(ip, node string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr(node),
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(ready), Terminating: ptr(false)}}
}

func slice(port int32, name string, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	return discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps,
		Ports: []discoveryv1.EndpointPort{{Name: ptr(name), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(port)}}}
}

type fe struct {
	Name     string
	Addr     string
	Proto    ebpf.Protocol
	Backends []string
	External bool
	Local    bool
	Affinity time.Duration
}

func summarizeFrontends(svcs []ebpf.Service) []fe {
	var out []fe
	for _, s := range svcs {
		f := fe{Name: s.Name, Addr: fmt.Sprintf("%s:%d", s.Addr, s.Port), Proto: s.Protocol, External: s.External, Local: s.LocalOnly, Affinity: s.AffinityTimeout}
		for _, b := range s.Backends {
			v := fmt.Sprintf("%s:%d", b.IP, b.Port)
			if b.Terminating {
				v += " (terminating)"
			}
			f.Backends = append(f.Backends, v)
		}
		out = append(out, f)
	}
	return out
}

func TestFrontends(t *testing.T) {
	web := api.ServiceEndpoints{
		Service: corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10", ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}},
		}},
		Slices: []discoveryv1.EndpointSlice{
			slice(8080, "http", endpoint("10.244.0.5", "n1", true), endpoint("10.244.1.5", "n2", true), endpoint("10.244.0.6", "n1", false)),
			slice(9090, "http", endpoint("10.244.0.7", "n1", true)),
		},
	}
	term := endpoint("10.244.0.9", "n1", false)
	term.Conditions.Serving, term.Conditions.Terminating = ptr(true), ptr(true)
	dnsSvc := api.ServiceEndpoints{
		Service: corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "dns", Namespace: "kube-system"}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.53", SessionAffinity: corev1.ServiceAffinityClientIP,
			SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}},
			Ports:                 []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "sctp", Port: 9, Protocol: corev1.ProtocolSCTP}},
		}, Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.168.50.1"}}}}},
		Slices: []discoveryv1.EndpointSlice{{AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{endpoint("10.244.0.2", "n1", true), term},
			Ports: []discoveryv1.EndpointPort{{Name: ptr("dns"), Protocol: ptr(corev1.ProtocolUDP), Port: ptr(int32(5353))}}}},
	}
	headless := api.ServiceEndpoints{Service: corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Port: 5432}}}}}
	ext := api.ServiceEndpoints{Service: corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}}

	got, lbs := Frontends([]api.ServiceEndpoints{web, dnsSvc, headless, ext}, "n1", []netip.Addr{netip.MustParseAddr("192.168.1.10")})
	want := []fe{
		{Name: "default/web:http", Addr: "10.96.0.10:80", Proto: ebpf.TCP, Backends: []string{"10.244.0.5:8080", "10.244.0.7:9090", "10.244.1.5:8080"}},
		{Name: "kube-system/dns:dns", Addr: "10.96.0.53:53", Proto: ebpf.UDP, Backends: []string{"10.244.0.2:5353", "10.244.0.9:5353 (terminating)"}, Affinity: time.Minute},
		{Name: "default/web:http (node port)", Addr: "192.168.1.10:30080", Proto: ebpf.TCP, Backends: []string{"10.244.0.5:8080", "10.244.0.7:9090"}, External: true, Local: true},
		{Name: "kube-system/dns:dns (external)", Addr: "192.168.50.1:53", Proto: ebpf.UDP, Backends: []string{"10.244.0.2:5353", "10.244.0.9:5353 (terminating)"}, External: true, Affinity: time.Minute},
	}
	if diff := cmp.Diff(want, summarizeFrontends(got)); diff != "" {
		t.Errorf("frontends (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Addr{netip.MustParseAddr("192.168.50.1")}, lbs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("LoadBalancer addresses (-want +got):\n%s", diff)
	}

	svcs, pods := DNSView([]api.ServiceEndpoints{web, headless, ext})
	if len(svcs) != 3 || svcs[0].ClusterIP != netip.MustParseAddr("10.96.0.10") || svcs[1].ClusterIP.IsValid() || svcs[2].ExternalName != "example.com" {
		t.Errorf("dns services: %+v", svcs)
	}
	if len(svcs[0].Endpoints) != 4 || len(pods) != 4 {
		t.Errorf("dns endpoints %d, pods %d; want 4 and 4", len(svcs[0].Endpoints), len(pods))
	}
}

// TestSyncLBAddresses adds, keeps and removes LoadBalancer addresses on the
// loopback interface of a network namespace of its own.
func TestSyncLBAddresses(t *testing.T) {
	gittest.RequireRoot(t, "changes addresses in a network namespace")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	name := fmt.Sprintf("klbaddr%d", time.Now().UnixNano()%100000)
	ns, err := netns.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = netns.Set(orig)
		ns.Close()
		_ = netns.DeleteNamed(name)
	}()
	show := func() string {
		out, err := exec.Command("ip", "-4", "-o", "addr", "show", "dev", "lo").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr: %v %s", err, out)
		}
		var got []string
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) > 3 {
				got = append(got, f[3]+" "+f[len(f)-1])
			}
		}
		return strings.Join(got, ",")
	}
	if out, err := exec.Command("ip", "addr", "add", "10.77.0.1/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	a, b := netip.MustParseAddr("192.168.50.1"), netip.MustParseAddr("192.168.50.2")
	if err := SyncLBAddresses([]netip.Addr{a, b}); err != nil {
		t.Fatal(err)
	}
	if got := show(); !strings.Contains(got, "192.168.50.1/32") || !strings.Contains(got, "192.168.50.2/32") {
		t.Errorf("after adding: %s", got)
	}
	if err := SyncLBAddresses([]netip.Addr{b}); err != nil {
		t.Fatal(err)
	}
	if got := show(); strings.Contains(got, "192.168.50.1/32") || !strings.Contains(got, "192.168.50.2/32") {
		t.Errorf("after removing one: %s", got)
	}
	if err := RemoveLBAddresses(); err != nil {
		t.Fatal(err)
	}
	if got := show(); strings.Contains(got, "192.168.50.") || !strings.Contains(got, "10.77.0.1/32") {
		t.Errorf("after removing all: %s (the address the agent did not add must stay)", got)
	}
}

// TestLoadBalancerAddressesHeldOnce: each LoadBalancer address is held by
// exactly one of the Ready nodes, every node computing the same answer, and
// an address moves only when its node leaves.
func TestLoadBalancerAddressesHeldOnce(t *testing.T) {
	var addrs []netip.Addr
	for i := range 50 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{192, 168, 9, byte(i + 1)}))
	}
	nodes := []string{"a", "b", "c"}
	holder := func(ready []string) map[netip.Addr]string {
		out := map[netip.Addr]string{}
		for _, n := range ready {
			for _, a := range heldHere(addrs, ready, n) {
				if other, ok := out[a]; ok {
					t.Errorf("%s held by %s and %s", a, other, n)
				}
				out[a] = n
			}
		}
		return out
	}
	before := holder(nodes)
	if len(before) != len(addrs) {
		t.Fatalf("%d of %d addresses held", len(before), len(addrs))
	}
	per := map[string]int{}
	for _, n := range before {
		per[n]++
	}
	for _, n := range nodes {
		if per[n] < 5 {
			t.Errorf("node %s holds %d of 50: not spread (%v)", n, per[n], per)
		}
	}
	after := holder([]string{"a", "c"})
	for a, n := range before {
		if n != "b" && after[a] != n {
			t.Errorf("%s moved from %s to %s though %s stayed", a, n, after[a], n)
		}
	}
	if got := heldHere(addrs[:3], nil, "a"); len(got) != 3 {
		t.Errorf("with no node known, a node holds %d of 3", len(got))
	}
	var synced []netip.Addr
	h := &LBHolder{Node: "a", Sync: func(a []netip.Addr) error { synced = a; return nil }}
	_ = h.SetAddrs(addrs)
	if len(synced) != len(addrs) {
		t.Errorf("before the node list: %d held", len(synced))
	}
	h.SetNodes(nodes)
	if len(synced) != per["a"] {
		t.Errorf("after the node list: %d held, want %d", len(synced), per["a"])
	}
}
