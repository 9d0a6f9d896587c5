package nodeagent

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/ebpf"
	"github.com/keelson/keelson/nodeagent/dns"
)

// ServiceLB is the node's service load balancer (ebpf.LB): it makes its
// frontends equal to what it is given.
type ServiceLB interface {
	Sync(svcs []ebpf.Service) error
}

// ServiceDNS is the node's DNS server (dns.Server).
type ServiceDNS interface {
	Update(svcs []dns.Service, pods []dns.Pod)
}

// Services follows the controller's Services and their endpoints and
// programs them into the node's load balancer, DNS server and LoadBalancer
// addresses. While the controller is away, what was programmed stays.
type Services struct {
	Client *client.Client
	Node   string
	// NodeAddrs are the node's addresses: NodePort frontends listen on each.
	NodeAddrs []netip.Addr
	LB        ServiceLB  // nil: no load balancing (tests of DNS alone)
	DNS       ServiceDNS // nil: no DNS
	// Addresses, when set, is given the LoadBalancer addresses the node
	// must hold (see LBAddresses).
	Addresses func(addrs []netip.Addr) error
	// OnSynced, when set, is told each store index once it is programmed.
	OnSynced func(index uint64)
	// OnServices, when set, gets every list of Services with their
	// endpoint slices (the Ingress routes follow them).
	OnServices func(items []api.ServiceEndpoints)
	Log        *slog.Logger
}

// Run follows the services until ctx ends.
func (s *Services) Run(ctx context.Context) {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lastErr string
	followQuery(ctx, log, "services", func(ctx context.Context, idx uint64) (uint64, error) {
		list, err := s.Client.Services(ctx, client.Query{Index: idx, Wait: 5 * time.Minute})
		if err != nil {
			return idx, err
		}
		if !list.Applied {
			// A controller that has just started knows no Service yet:
			// keep what is programmed until it has applied its revision.
			return list.Index, nil
		}
		fe, lbAddrs := Frontends(list.Items, s.Node, s.NodeAddrs)
		var errs []string
		if s.LB != nil {
			if err := s.LB.Sync(fe); err != nil {
				errs = append(errs, "load balancer: "+err.Error())
			}
		}
		if s.Addresses != nil {
			if err := s.Addresses(lbAddrs); err != nil {
				errs = append(errs, "LoadBalancer addresses: "+err.Error())
			}
		}
		if s.DNS != nil {
			s.DNS.Update(DNSView(list.Items))
		}
		if s.OnServices != nil {
			s.OnServices(list.Items)
		}
		if msg := strings.Join(errs, "; "); msg != lastErr {
			if msg != "" {
				log.Error("services not fully programmed; retried on the next change", "err", msg)
			}
			lastErr = msg
		}
		if s.OnSynced != nil && len(errs) == 0 {
			s.OnSynced(list.Index)
		}
		return list.Index, nil
	})
}

// Frontends turns the controller's services into the load balancer's
// frontends, sorted: one per ClusterIP and port, one per node address and
// node port, one per LoadBalancer (or external) address and port. Backends
// are the ready endpoints with the port resolved for them, plus the
// terminating ones still serving (which get no new connections). It also
// returns the LoadBalancer addresses the node must hold.
func Frontends(items []api.ServiceEndpoints, node string, nodeAddrs []netip.Addr) ([]ebpf.Service, []netip.Addr) {
	var out []ebpf.Service
	lbSet := map[netip.Addr]bool{}
	for i := range items {
		svc := &items[i].Service
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		clusterIP, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !clusterIP.Is4() {
			continue // headless: DNS only
		}
		var affinity time.Duration
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity = time.Duration(corev1.DefaultClientIPServiceAffinitySeconds) * time.Second
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
			}
		}
		local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		var external []netip.Addr
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
				external = append(external, a)
				if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
					lbSet[a] = true
				}
			}
		}
		for _, ip := range svc.Spec.ExternalIPs {
			if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
				external = append(external, a)
			}
		}
		for _, p := range svc.Spec.Ports {
			proto, ok := protocolOf(p.Protocol)
			if !ok {
				continue // SCTP: not load balanced
			}
			name := svc.Namespace + "/" + svc.Name
			if p.Name != "" {
				name += ":" + p.Name
			}
			all := backendsFor(items[i].Slices, p, "")
			out = append(out, ebpf.Service{Name: name, Addr: clusterIP, Port: uint16(p.Port), Protocol: proto, Backends: all, AffinityTimeout: affinity})
			ext := all
			if local {
				ext = backendsFor(items[i].Slices, p, node)
			}
			if p.NodePort != 0 {
				for _, a := range nodeAddrs {
					out = append(out, ebpf.Service{Name: name + " (node port)", Addr: a, Port: uint16(p.NodePort), Protocol: proto, Backends: ext,
						External: true, LocalOnly: local, AffinityTimeout: affinity})
				}
			}
			for _, a := range external {
				out = append(out, ebpf.Service{Name: name + " (external)", Addr: a, Port: uint16(p.Port), Protocol: proto, Backends: ext,
					External: true, LocalOnly: local, AffinityTimeout: affinity})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c < 0
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Protocol < b.Protocol
	})
	// Two services claiming one frontend (an external address given to
	// both): the first in order keeps it.
	out = slices.CompactFunc(out, func(a, b ebpf.Service) bool {
		return a.Addr == b.Addr && a.Port == b.Port && a.Protocol == b.Protocol
	})
	lbs := make([]netip.Addr, 0, len(lbSet))
	for a := range lbSet {
		lbs = append(lbs, a)
	}
	slices.SortFunc(lbs, netip.Addr.Compare)
	return out, lbs
}

func protocolOf(p corev1.Protocol) (ebpf.Protocol, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return ebpf.TCP, true
	case corev1.ProtocolUDP:
		return ebpf.UDP, true
	}
	return 0, false
}

// backendsFor lists the endpoints serving service port p, with the target
// port resolved for each, sorted; only those on node when node is set.
func backendsFor(slices []discoveryv1.EndpointSlice, p corev1.ServicePort, node string) []ebpf.Backend {
	var out []ebpf.Backend
	for _, s := range slices {
		var port int32
		found := false
		for _, sp := range s.Ports {
			if sp.Port != nil && derefStr(sp.Name) == p.Name && protoOr(sp.Protocol) == protoOr(&p.Protocol) {
				port, found = *sp.Port, true
				break
			}
		}
		if !found {
			continue
		}
		for _, e := range s.Endpoints {
			if node != "" && derefStr(e.NodeName) != node {
				continue
			}
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			serving := e.Conditions.Serving != nil && *e.Conditions.Serving
			terminating := e.Conditions.Terminating != nil && *e.Conditions.Terminating
			if !ready && !(terminating && serving) {
				continue
			}
			for _, a := range e.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || !ip.Is4() {
					continue
				}
				out = append(out, ebpf.Backend{IP: ip, Port: uint16(port), Terminating: !ready})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].IP.Compare(out[j].IP); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
}

func derefStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func protoOr(p *corev1.Protocol) corev1.Protocol {
	if p == nil || *p == "" {
		return corev1.ProtocolTCP
	}
	return *p
}

// DNSView turns the controller's services into the DNS server's view, with
// the pods that back them (for their pod names and PTR records).
func DNSView(items []api.ServiceEndpoints) ([]dns.Service, []dns.Pod) {
	var (
		svcs []dns.Service
		pods []dns.Pod
	)
	seen := map[netip.Addr]bool{}
	for i := range items {
		svc := &items[i].Service
		d := dns.Service{Namespace: svc.Namespace, Name: svc.Name, PublishNotReadyAddresses: svc.Spec.PublishNotReadyAddresses}
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			d.ExternalName = svc.Spec.ExternalName
		} else if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
			d.ClusterIP = ip
		}
		for _, p := range svc.Spec.Ports {
			d.Ports = append(d.Ports, dns.Port{Name: p.Name, Protocol: string(protoOr(&p.Protocol)), Port: uint16(p.Port)})
		}
		for _, s := range items[i].Slices {
			var ports []dns.Port
			for _, sp := range s.Ports {
				if sp.Port != nil {
					ports = append(ports, dns.Port{Name: derefStr(sp.Name), Protocol: string(protoOr(sp.Protocol)), Port: uint16(*sp.Port)})
				}
			}
			for _, e := range s.Endpoints {
				for _, a := range e.Addresses {
					ip, err := netip.ParseAddr(a)
					if err != nil {
						continue
					}
					d.Endpoints = append(d.Endpoints, dns.Endpoint{IP: ip, Hostname: derefStr(e.Hostname),
						Ready: e.Conditions.Ready == nil || *e.Conditions.Ready, Ports: ports})
					if !seen[ip] {
						seen[ip] = true
						pods = append(pods, dns.Pod{Namespace: svc.Namespace, IP: ip})
					}
				}
			}
		}
		svcs = append(svcs, d)
	}
	return svcs, pods
}
