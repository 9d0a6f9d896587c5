package dns

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// testServices is a small cluster with one service of each kind.
func testServices() []Service {
	ip := netip.MustParseAddr
	return []Service{
		{
			Namespace: "default", Name: "web", ClusterIP: ip("10.96.0.10"),
			Ports: []Port{
				{Name: "http", Protocol: "TCP", Port: 80},
				{Name: "dns", Protocol: "UDP", Port: 53},
				{Protocol: "TCP", Port: 8080}, // unnamed: no _port._proto name
			},
			Endpoints: []Endpoint{
				{IP: ip("10.244.1.5"), Ready: true},
				{IP: ip("10.244.1.6"), Ready: false},
			},
		},
		{
			Namespace: "default", Name: "db", // headless StatefulSet
			Ports: []Port{{Name: "pg", Protocol: "TCP", Port: 5432}},
			Endpoints: []Endpoint{
				{IP: ip("10.244.2.11"), Hostname: "db-1", Ready: true, Ports: []Port{{Name: "pg", Protocol: "TCP", Port: 15432}}},
				{IP: ip("10.244.1.10"), Hostname: "db-0", Ready: true, Ports: []Port{{Name: "pg", Protocol: "TCP", Port: 15432}}},
				{IP: ip("10.244.2.12"), Hostname: "db-2", Ready: false, Ports: []Port{{Name: "pg", Protocol: "TCP", Port: 15432}}},
			},
		},
		{
			Namespace: "default", Name: "pub", PublishNotReadyAddresses: true,
			Ports:     []Port{{Name: "gossip", Protocol: "UDP", Port: 7946}},
			Endpoints: []Endpoint{{IP: ip("10.244.3.1"), Ready: false}}, // no hostname, no ports of its own
		},
		{Namespace: "default", Name: "empty"}, // headless, no endpoints
		{Namespace: "default", Name: "ext", ExternalName: "Example.COM"},
		{Namespace: "default", Name: "alias", ExternalName: "web.default.svc.cluster.local"},
		{Namespace: "default", Name: "loop1", ExternalName: "loop2.default.svc.cluster.local"},
		{Namespace: "default", Name: "loop2", ExternalName: "loop1.default.svc.cluster.local"},
		{Namespace: "default", Name: "byip", ExternalName: "192.0.2.1"}, // not a name: left out
		{Namespace: "default", Name: "v6", ClusterIP: ip("fd00::10")},
		{Namespace: "Other", Name: "Web", ClusterIP: ip("10.96.0.20")},
		{
			Namespace: "default", Name: "peers",
			Endpoints: []Endpoint{
				{IP: ip("10.244.5.2"), Hostname: "peer", Ready: true, Ports: []Port{{Name: "p2p", Protocol: "UDP", Port: 4000}}},
				{IP: ip("10.244.5.1"), Hostname: "peer", Ready: true, Ports: []Port{{Name: "p2p", Protocol: "UDP", Port: 4000}}},
				{IP: ip("10.244.5.3"), Hostname: "10-9-9-9", Ready: true, Ports: []Port{{Name: "p2p", Protocol: "UDP", Port: 4000}}},
			},
		},
		{Namespace: "default", Name: "web", ClusterIP: ip("10.96.9.9")}, // given twice: the first wins
	}
}

func testPods() []Pod {
	return []Pod{
		{Namespace: "default", IP: netip.MustParseAddr("10.244.1.5")},
		{Namespace: "kube-system", IP: netip.MustParseAddr("10.244.9.9")},
		{Namespace: "default", IP: netip.MustParseAddr("fd00::99")},
	}
}

func testView(insecure bool) *view {
	return newView(viewOptions{
		zone:         "cluster.local.",
		serial:       42,
		insecurePods: insecure,
		nsAddrs:      []netip.Addr{netip.MustParseAddr("10.88.0.1")},
	}, testServices(), testPods())
}

// result is a reply written as text, for readable diffs.
type result struct {
	Handled bool
	Rcode   string
	Answer  []string
	Ns      []string
	Extra   []string
	Chase   string
}

func toResult(r reply) result {
	text := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			out = append(out, strings.Join(strings.Fields(rr.String()), " "))
		}
		return out
	}
	res := result{Handled: r.handled, Answer: text(r.answer), Ns: text(r.ns), Extra: text(r.extra), Chase: r.chase}
	if r.handled {
		res.Rcode = dns.RcodeToString[r.rcode]
	}
	return res
}

const soa = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5"

func nxdomain() result { return result{Handled: true, Rcode: "NXDOMAIN", Ns: []string{soa}} }
func nodata() result   { return result{Handled: true, Rcode: "NOERROR", Ns: []string{soa}} }
func answer(rrs ...string) result {
	return result{Handled: true, Rcode: "NOERROR", Answer: rrs}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name     string
		qname    string
		qtype    uint16
		insecure bool
		want     result
	}{
		// Services with a ClusterIP.
		{name: "clusterIP A", qname: "web.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer("web.default.svc.cluster.local. 5 IN A 10.96.0.10")},
		{name: "case of the question kept, matched without case", qname: "WEB.Default.svc.Cluster.Local.", qtype: dns.TypeA,
			want: answer("WEB.Default.svc.Cluster.Local. 5 IN A 10.96.0.10")},
		{name: "name written in capitals in the manifest", qname: "web.other.svc.cluster.local.", qtype: dns.TypeA,
			want: answer("web.other.svc.cluster.local. 5 IN A 10.96.0.20")},
		{name: "AAAA of an IPv4 service is no data", qname: "web.default.svc.cluster.local.", qtype: dns.TypeAAAA,
			want: nodata()},
		{name: "MX of a service is no data", qname: "web.default.svc.cluster.local.", qtype: dns.TypeMX,
			want: nodata()},
		{name: "IPv6 service AAAA", qname: "v6.default.svc.cluster.local.", qtype: dns.TypeAAAA,
			want: answer("v6.default.svc.cluster.local. 5 IN AAAA fd00::10")},
		{name: "IPv6 service A is no data", qname: "v6.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nodata()},
		{name: "clusterIP SRV of a named port", qname: "_http._tcp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			want: result{Handled: true, Rcode: "NOERROR",
				Answer: []string{"_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
				Extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}}},
		{name: "clusterIP SRV of a UDP port", qname: "_dns._udp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			want: result{Handled: true, Rcode: "NOERROR",
				Answer: []string{"_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."},
				Extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}}},
		{name: "port with the wrong protocol", qname: "_dns._tcp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			want: nxdomain()},
		{name: "A of a port name is no data", qname: "_http._tcp.web.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nodata()},
		{name: "protocol label alone exists", qname: "_tcp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			want: nodata()},
		{name: "SRV of the service lists every port", qname: "web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			want: result{Handled: true, Rcode: "NOERROR",
				Answer: []string{
					"web.default.svc.cluster.local. 5 IN SRV 0 33 53 web.default.svc.cluster.local.",
					"web.default.svc.cluster.local. 5 IN SRV 0 33 80 web.default.svc.cluster.local.",
					"web.default.svc.cluster.local. 5 IN SRV 0 33 8080 web.default.svc.cluster.local.",
				},
				Extra: []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}}},
		{name: "ready endpoint of a clusterIP service by its address", qname: "10-244-1-5.web.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer("10-244-1-5.web.default.svc.cluster.local. 5 IN A 10.244.1.5")},
		{name: "not-ready endpoint of a clusterIP service", qname: "10-244-1-6.web.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},

		// Headless services.
		{name: "headless A: ready endpoints only", qname: "db.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer(
				"db.default.svc.cluster.local. 5 IN A 10.244.1.10",
				"db.default.svc.cluster.local. 5 IN A 10.244.2.11")},
		{name: "headless endpoint by hostname", qname: "db-0.db.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer("db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.10")},
		{name: "headless not-ready endpoint", qname: "db-2.db.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "headless SRV: one per endpoint, target port", qname: "_pg._tcp.db.default.svc.cluster.local.", qtype: dns.TypeSRV,
			want: result{Handled: true, Rcode: "NOERROR",
				Answer: []string{
					"_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 db-0.db.default.svc.cluster.local.",
					"_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 db-1.db.default.svc.cluster.local.",
				},
				Extra: []string{
					"db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.10",
					"db-1.db.default.svc.cluster.local. 5 IN A 10.244.2.11",
				}}},
		{name: "publishNotReadyAddresses", qname: "pub.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer("pub.default.svc.cluster.local. 5 IN A 10.244.3.1")},
		{name: "endpoint without hostname is named by its address", qname: "10-244-3-1.pub.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer("10-244-3-1.pub.default.svc.cluster.local. 5 IN A 10.244.3.1")},
		{name: "headless SRV falls back to the service's ports", qname: "_gossip._udp.pub.default.svc.cluster.local.", qtype: dns.TypeSRV,
			want: result{Handled: true, Rcode: "NOERROR",
				Answer: []string{"_gossip._udp.pub.default.svc.cluster.local. 5 IN SRV 0 100 7946 10-244-3-1.pub.default.svc.cluster.local."},
				Extra:  []string{"10-244-3-1.pub.default.svc.cluster.local. 5 IN A 10.244.3.1"}}},
		{name: "headless without endpoints", qname: "empty.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},

		{name: "endpoints sharing a hostname", qname: "peer.peers.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer(
				"peer.peers.default.svc.cluster.local. 5 IN A 10.244.5.1",
				"peer.peers.default.svc.cluster.local. 5 IN A 10.244.5.2")},
		{name: "hostname that looks like an address", qname: "10-9-9-9.peers.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer("10-9-9-9.peers.default.svc.cluster.local. 5 IN A 10.244.5.3")},
		{name: "endpoint with a hostname is not named by its address", qname: "10-244-5-3.peers.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "SRV: one record per target and port", qname: "_p2p._udp.peers.default.svc.cluster.local.", qtype: dns.TypeSRV,
			want: result{Handled: true, Rcode: "NOERROR",
				Answer: []string{
					"_p2p._udp.peers.default.svc.cluster.local. 5 IN SRV 0 50 4000 10-9-9-9.peers.default.svc.cluster.local.",
					"_p2p._udp.peers.default.svc.cluster.local. 5 IN SRV 0 50 4000 peer.peers.default.svc.cluster.local.",
				},
				Extra: []string{
					"10-9-9-9.peers.default.svc.cluster.local. 5 IN A 10.244.5.3",
					"peer.peers.default.svc.cluster.local. 5 IN A 10.244.5.1",
					"peer.peers.default.svc.cluster.local. 5 IN A 10.244.5.2",
				}}},
		{name: "protocol label of a headless service exists", qname: "_udp.peers.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nodata()},
		{name: "protocol without a named port", qname: "_tcp.peers.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "too many labels", qname: "a._http._tcp.web.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},

		// ExternalName services.
		{name: "ExternalName A: CNAME, target resolved upstream", qname: "ext.default.svc.cluster.local.", qtype: dns.TypeA,
			want: result{Handled: true, Rcode: "NOERROR",
				Answer: []string{"ext.default.svc.cluster.local. 5 IN CNAME example.com."}, Chase: "example.com."}},
		{name: "ExternalName CNAME query", qname: "ext.default.svc.cluster.local.", qtype: dns.TypeCNAME,
			want: answer("ext.default.svc.cluster.local. 5 IN CNAME example.com.")},
		{name: "ExternalName into the cluster is followed", qname: "alias.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer(
				"alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
				"web.default.svc.cluster.local. 5 IN A 10.96.0.10")},
		{name: "ExternalName loop ends", qname: "loop1.default.svc.cluster.local.", qtype: dns.TypeA,
			want: answer(
				"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local.",
				"loop2.default.svc.cluster.local. 5 IN CNAME loop1.default.svc.cluster.local.",
				"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local.",
				"loop2.default.svc.cluster.local. 5 IN CNAME loop1.default.svc.cluster.local.",
				"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local.",
				"loop2.default.svc.cluster.local. 5 IN CNAME loop1.default.svc.cluster.local.",
				"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local.",
				"loop2.default.svc.cluster.local. 5 IN CNAME loop1.default.svc.cluster.local.",
				"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local.")},
		{name: "ExternalName has nothing below it", qname: "x.ext.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "ExternalName that is an address is left out", qname: "byip.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},

		// Pods.
		{name: "pod A", qname: "10-244-1-5.default.pod.cluster.local.", qtype: dns.TypeA,
			want: answer("10-244-1-5.default.pod.cluster.local. 5 IN A 10.244.1.5")},
		{name: "pod AAAA", qname: "fd00--99.default.pod.cluster.local.", qtype: dns.TypeAAAA,
			want: answer("fd00--99.default.pod.cluster.local. 5 IN AAAA fd00::99")},
		{name: "pod in another namespace", qname: "10-244-1-5.kube-system.pod.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "namespace with pods exists", qname: "kube-system.pod.cluster.local.", qtype: dns.TypeA,
			want: nodata()},
		{name: "unknown pod, verified", qname: "10-1-2-3.default.pod.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "unknown pod, insecure", qname: "10-1-2-3.default.pod.cluster.local.", qtype: dns.TypeA, insecure: true,
			want: answer("10-1-2-3.default.pod.cluster.local. 5 IN A 10.1.2.3")},
		{name: "insecure IPv6 pod", qname: "fd00--1.default.pod.cluster.local.", qtype: dns.TypeAAAA, insecure: true,
			want: answer("fd00--1.default.pod.cluster.local. 5 IN AAAA fd00::1")},
		{name: "insecure, not an address", qname: "web.default.pod.cluster.local.", qtype: dns.TypeA, insecure: true,
			want: nxdomain()},
		{name: "insecure, five numbers", qname: "10-1-2-3-4.default.pod.cluster.local.", qtype: dns.TypeA, insecure: true,
			want: nxdomain()},

		// The rest of the zone.
		{name: "unknown service", qname: "nope.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "search path expansion of an outside name", qname: "example.com.default.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "unknown namespace", qname: "web.nope.svc.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "namespace with services exists", qname: "default.svc.cluster.local.", qtype: dns.TypeA,
			want: nodata()},
		{name: "svc label exists", qname: "svc.cluster.local.", qtype: dns.TypeA,
			want: nodata()},
		{name: "pod label exists", qname: "pod.cluster.local.", qtype: dns.TypeA,
			want: nodata()},
		{name: "neither svc nor pod", qname: "web.default.cluster.local.", qtype: dns.TypeA,
			want: nxdomain()},
		{name: "apex A", qname: "cluster.local.", qtype: dns.TypeA,
			want: nodata()},
		{name: "apex SOA", qname: "cluster.local.", qtype: dns.TypeSOA,
			want: answer(soa)},
		{name: "apex NS", qname: "cluster.local.", qtype: dns.TypeNS,
			want: result{Handled: true, Rcode: "NOERROR",
				Answer: []string{"cluster.local. 5 IN NS ns.dns.cluster.local."},
				Extra:  []string{"ns.dns.cluster.local. 5 IN A 10.88.0.1"}}},
		{name: "the server's own name", qname: "ns.dns.cluster.local.", qtype: dns.TypeA,
			want: answer("ns.dns.cluster.local. 5 IN A 10.88.0.1")},
		{name: "dns-version", qname: "dns-version.cluster.local.", qtype: dns.TypeTXT,
			want: answer(`dns-version.cluster.local. 5 IN TXT "1.1.0"`)},
		{name: "ANY", qname: "web.default.svc.cluster.local.", qtype: dns.TypeANY,
			want: answer(
				"web.default.svc.cluster.local. 5 IN A 10.96.0.10",
				"web.default.svc.cluster.local. 5 IN SRV 0 33 53 web.default.svc.cluster.local.",
				"web.default.svc.cluster.local. 5 IN SRV 0 33 80 web.default.svc.cluster.local.",
				"web.default.svc.cluster.local. 5 IN SRV 0 33 8080 web.default.svc.cluster.local.")},

		// Reverse.
		{name: "PTR of a ClusterIP", qname: "10.0.96.10.in-addr.arpa.", qtype: dns.TypePTR,
			want: answer("10.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local.")},
		{name: "PTR of an endpoint wins over the pod", qname: "5.1.244.10.in-addr.arpa.", qtype: dns.TypePTR,
			want: answer("5.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-5.web.default.svc.cluster.local.")},
		{name: "PTR of a StatefulSet pod", qname: "10.1.244.10.in-addr.arpa.", qtype: dns.TypePTR,
			want: answer("10.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local.")},
		{name: "PTR of a pod", qname: "9.9.244.10.in-addr.arpa.", qtype: dns.TypePTR,
			want: answer("9.9.244.10.in-addr.arpa. 5 IN PTR 10-244-9-9.kube-system.pod.cluster.local.")},
		{name: "PTR of an IPv6 ClusterIP",
			qname: "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", qtype: dns.TypePTR,
			want: answer("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR v6.default.svc.cluster.local.")},
		{name: "PTR of another address is forwarded", qname: "1.2.0.192.in-addr.arpa.", qtype: dns.TypePTR,
			want: result{}},
		{name: "A of a reverse name is forwarded", qname: "10.0.96.10.in-addr.arpa.", qtype: dns.TypeA,
			want: result{}},

		// Outside the zone.
		{name: "outside name is forwarded", qname: "example.com.", qtype: dns.TypeA,
			want: result{}},
		{name: "zone as a suffix of a label is outside", qname: "notcluster.local.", qtype: dns.TypeA,
			want: result{}},
	}
	views := map[bool]*view{false: testView(false), true: testView(true)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toResult(views[tt.insecure].lookup(dns.Question{Name: tt.qname, Qtype: tt.qtype, Qclass: dns.ClassINET}))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lookup(%s %s) (-want +got):\n%s", tt.qname, dns.TypeToString[tt.qtype], diff)
			}
		})
	}
}

// TestLookupChaosClass checks that the zone refuses classes other than IN.
func TestLookupChaosClass(t *testing.T) {
	got := toResult(testView(false).lookup(dns.Question{Name: "web.default.svc.cluster.local.", Qtype: dns.TypeA, Qclass: dns.ClassCHAOS}))
	want := result{Handled: true, Rcode: "REFUSED"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestLookupDoesNotShareRecords checks that a reply's records are its own:
// the server changes answers (shuffles, truncates) after lookup.
func TestLookupDoesNotShareRecords(t *testing.T) {
	v := testView(false)
	q := dns.Question{Name: "db.default.svc.cluster.local.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	first := v.lookup(q)
	first.answer[0].Header().Ttl = 999
	first.answer[0], first.answer[1] = first.answer[1], first.answer[0]
	if diff := cmp.Diff(toResult(v.lookup(q)), answer(
		"db.default.svc.cluster.local. 5 IN A 10.244.1.10",
		"db.default.svc.cluster.local. 5 IN A 10.244.2.11")); diff != "" {
		t.Errorf("second lookup changed (-got +want):\n%s", diff)
	}
}

func TestNewViewOrderIndependent(t *testing.T) {
	svcs := testServices()
	rev := make([]Service, len(svcs))
	for i := range svcs {
		rev[len(svcs)-1-i] = svcs[i]
	}
	opts := viewOptions{zone: "cluster.local.", serial: 1}
	a, b := newView(opts, svcs, nil), newView(opts, rev, nil)
	for _, name := range []string{"db.default.svc.cluster.local.", "_pg._tcp.db.default.svc.cluster.local."} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeSRV} {
			q := dns.Question{Name: name, Qtype: qt, Qclass: dns.ClassINET}
			if diff := cmp.Diff(toResult(a.lookup(q)), toResult(b.lookup(q))); diff != "" {
				t.Errorf("%s %s depends on the order of services:\n%s", name, dns.TypeToString[qt], diff)
			}
		}
	}
}

func TestReverseAddr(t *testing.T) {
	tests := []struct {
		name string
		want string // "" for not an address
	}{
		{"4.3.2.1.in-addr.arpa.", "1.2.3.4"},
		{"0.0.0.0.in-addr.arpa.", "0.0.0.0"},
		{"3.2.1.in-addr.arpa.", ""},
		{"256.3.2.1.in-addr.arpa.", ""},
		{"04.3.2.1.in-addr.arpa.", ""},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", "fd00::1"},
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa.", "4321:0:1:2:3:4:567:89ab"},
		{"1.0.ip6.arpa.", ""},
		{"example.com.", ""},
	}
	for _, tt := range tests {
		ip, ok := reverseAddr(tt.name)
		got := ""
		if ok {
			got = ip.String()
		}
		if got != tt.want {
			t.Errorf("reverseAddr(%q) = %q, want %q", tt.name, got, tt.want)
		}
		if ok {
			// miekg/dns writes the same name for the address.
			if arpa, err := dns.ReverseAddr(got); err != nil || arpa != tt.name {
				t.Errorf("dns.ReverseAddr(%s) = %q, %v; want %q", got, arpa, err, tt.name)
			}
		}
	}
}
