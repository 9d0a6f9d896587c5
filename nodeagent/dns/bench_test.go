package dns

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// benchServices makes n services over n/100 namespaces: four in five with a
// ClusterIP and two named ports, one in five headless with three
// StatefulSet endpoints.
func benchServices(n int) []Service {
	svcs := make([]Service, 0, n)
	for i := range n {
		svc := Service{
			Namespace: fmt.Sprintf("ns%d", i/100),
			Name:      fmt.Sprintf("svc%d", i),
			Ports:     []Port{{Name: "http", Protocol: "TCP", Port: 80}, {Name: "metrics", Protocol: "TCP", Port: 9090}},
		}
		if i%5 == 4 {
			for j := range 3 {
				svc.Endpoints = append(svc.Endpoints, Endpoint{
					IP:       netip.AddrFrom4([4]byte{10, byte(100 + j), byte(i >> 8), byte(i)}),
					Hostname: fmt.Sprintf("svc%d-%d", i, j),
					Ready:    true,
				})
			}
		} else {
			svc.ClusterIP = netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
			svc.Endpoints = []Endpoint{{IP: netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)}), Ready: true}}
		}
		svcs = append(svcs, svc)
	}
	return svcs
}

// BenchmarkLookup looks up cluster names in a view of 10,000 services: a mix
// of A and SRV hits, endpoint names, and the NXDOMAIN misses that the
// search path makes of outside names.
func BenchmarkLookup(b *testing.B) {
	const n = 10000
	v := newView(viewOptions{zone: "cluster.local.", serial: 1}, benchServices(n), nil)
	var qs []dns.Question
	for i := 0; i < n; i += 7 {
		base := fmt.Sprintf("svc%d.ns%d.svc.cluster.local.", i, i/100)
		qs = append(qs,
			dns.Question{Name: base, Qtype: dns.TypeA, Qclass: dns.ClassINET},
			dns.Question{Name: "_http._tcp." + base, Qtype: dns.TypeSRV, Qclass: dns.ClassINET},
			dns.Question{Name: "example.com." + fmt.Sprintf("ns%d.svc.cluster.local.", i/100), Qtype: dns.TypeA, Qclass: dns.ClassINET},
			dns.Question{Name: base, Qtype: dns.TypeAAAA, Qclass: dns.ClassINET},
		)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if r := v.lookup(qs[i%len(qs)]); !r.handled {
			b.Fatal("not handled")
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkUpdate builds the view of 10,000 services, as every Update does.
func BenchmarkUpdate(b *testing.B) {
	svcs := benchServices(10000)
	s, err := New(Config{Addrs: []string{"127.0.0.1:0"}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Update(svcs, nil)
	}
}

// BenchmarkServeUDP is one query and its answer over loopback UDP, from a
// client to a running server with 10,000 services.
func BenchmarkServeUDP(b *testing.B) {
	s := startServer(b, Config{})
	s.Update(benchServices(10000), nil)
	c := &dns.Client{}
	co, err := c.Dial(addr(s))
	if err != nil {
		b.Fatal(err)
	}
	defer co.Close()
	m := new(dns.Msg).SetQuestion("svc42.ns0.svc.cluster.local.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		resp, _, err := c.ExchangeWithConn(m, co)
		if err != nil || len(resp.Answer) != 1 {
			b.Fatalf("%v %v", resp, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
