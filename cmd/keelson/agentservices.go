package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keelson/keelson/ebpf"
	"github.com/keelson/keelson/nodeagent/dns"
	ingressproxy "github.com/keelson/keelson/nodeagent/ingress"
	"github.com/keelson/keelson/nodeagent/network"
)

// serviceParts are what an agent joined to a controller runs for Services:
// the eBPF load balancer and the cluster DNS server on the bridge address.
type serviceParts struct {
	lb        *ebpf.LB
	dns       *dns.Server
	dnsAddr   netip.Addr
	nodeAddrs []netip.Addr
}

// startServiceParts checks the kernel, loads (or finds pinned) the load
// balancer programs and starts the DNS server. The bridge may not exist
// yet: the DNS server binds its address with IP_FREEBIND.
func startServiceParts(ctx context.Context, o agentOptions, hostIP string, log *slog.Logger) (*serviceParts, error) {
	prefix, err := netip.ParsePrefix(o.podCIDR)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR %q: %w", o.podCIDR, err)
	}
	p := &serviceParts{dnsAddr: prefix.Masked().Addr().Next()} // the bridge's address, as host-local gives it
	if ip, err := netip.ParseAddr(hostIP); err == nil {
		p.nodeAddrs = []netip.Addr{ip}
	}
	ifaces := o.externalIfaces
	if len(ifaces) == 0 {
		if name := interfaceWith(hostIP); name != "" {
			ifaces = []string{name}
		}
	}
	// Node ports answer on every address of the external interfaces.
	for _, name := range ifaces {
		for _, a := range addressesOf(name) {
			if !slices.Contains(p.nodeAddrs, a) {
				p.nodeAddrs = append(p.nodeAddrs, a)
			}
		}
	}
	cfg := ebpf.Config{Node: o.name, ExternalInterfaces: ifaces, LocalCIDRs: []netip.Prefix{prefix.Masked()},
		Log: log.With("component", "ebpf")}
	if len(p.nodeAddrs) > 0 {
		cfg.NodeAddr = p.nodeAddrs[0]
	}
	if err := ebpf.CheckKernel(cfg); err != nil {
		return nil, fmt.Errorf("this kernel cannot load-balance Services (run with --service-lb=false to go without): %w", err)
	}
	if p.lb, err = ebpf.Open(cfg); err != nil {
		return nil, fmt.Errorf("service load balancer: %w", err)
	}
	p.dns, err = dns.New(dns.Config{Addrs: []string{net.JoinHostPort(p.dnsAddr.String(), strconv.Itoa(53))}, Domain: o.clusterDomain,
		Log: log.With("component", "dns")})
	if err == nil {
		err = p.dns.Start(ctx)
	}
	if err != nil {
		_ = p.lb.Close()
		return nil, fmt.Errorf("cluster DNS on %s: %w", p.dnsAddr, err)
	}
	log.Info("services: eBPF load balancer and cluster DNS ready", "dns", p.dnsAddr, "external-interfaces", ifaces)
	return p, nil
}

// podDNS is what pods' resolv.conf names: this node's DNS server, or the
// node's own resolvers when there is none.
func (p *serviceParts) podDNS(domain string) network.DNSConfig {
	if p == nil {
		return network.DNSConfig{}
	}
	return network.DNSConfig{ClusterDNS: []string{p.dnsAddr.String()}, ClusterDomain: domain}
}

// Close stops the DNS server and releases the load balancer; its programs
// stay attached, so Services keep working while the agent is away.
func (p *serviceParts) Close() error {
	return errors.Join(p.dns.Close(), p.lb.Close())
}

// addressesOf lists the IPv4 addresses of an interface.
func addressesOf(name string) []netip.Addr {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	addrs, _ := ifc.Addrs()
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok && n.IP.To4() != nil {
				out = append(out, ip)
			}
		}
	}
	return out
}

// interfaceWith names the interface that holds ip, or "".
func interfaceWith(ip string) string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
				return ifc.Name
			}
		}
	}
	return ""
}

// ingressParts are the node's Ingress proxy and, where the kernel has it,
// the sk_lookup steering that hands it connections to ports 80 and 443 of
// the node's addresses and LoadBalancer addresses.
type ingressParts struct {
	proxy     *ingressproxy.Server
	steer     *ebpf.Steering // nil: the proxy binds the ports on every address
	nodeAddrs []netip.Addr
	log       *slog.Logger
}

// setLBAddrs steers the node's and these LoadBalancer addresses.
func (p *ingressParts) setLBAddrs(lb []netip.Addr) {
	if p == nil || p.steer == nil {
		return
	}
	addrs := append(slices.Clone(p.nodeAddrs), lb...)
	if err := p.steer.SetAddrs(addrs); err != nil {
		p.log.Error("steer Ingress addresses", "err", err)
	}
}

// startIngress runs the node's Ingress proxy until ctx ends. With steering
// the proxy listens once on loopback and an sk_lookup program gives it the
// connections to the Ingress ports of the node's addresses (and of each
// LoadBalancer address as soon as the node holds it); without it, the
// proxy binds the ports on every address. nil when Ingress is off or the
// ports cannot be had (another agent on this machine holds them): logged.
func startIngress(ctx context.Context, wg *sync.WaitGroup, o agentOptions, nodeAddrs []netip.Addr, reg prometheus.Registerer, log *slog.Logger) *ingressParts {
	if o.ingressHTTP == 0 {
		return nil
	}
	parts := &ingressParts{nodeAddrs: nodeAddrs, log: log}
	var httpLn, httpsLn net.Listener
	scfg := ebpf.SteerConfig{Node: o.name, Log: log}
	if err := ebpf.CheckSteering(scfg); err == nil {
		st, err := ebpf.OpenSteering(scfg)
		if err == nil {
			h, err1 := ebpf.ListenSteerable(ctx, "tcp4", "127.0.0.1:0")
			hs, err2 := ebpf.ListenSteerable(ctx, "tcp4", "127.0.0.1:0")
			err = errors.Join(err1, err2)
			if err == nil {
				err = errors.Join(st.SetListener(uint16(o.ingressHTTP), h), st.SetListener(uint16(o.ingressHTTPS), hs), st.SetAddrs(nodeAddrs))
			}
			if err == nil {
				httpLn, httpsLn, parts.steer = h, hs, st
			} else {
				for _, l := range []*net.TCPListener{h, hs} {
					if l != nil {
						l.Close()
					}
				}
				_ = st.Close()
			}
		}
		if err != nil {
			log.Warn("steering Ingress connections with sk_lookup failed; binding the ports instead", "err", err)
		}
	} else {
		log.Info("no sk_lookup steering; binding the Ingress ports", "why", err)
	}
	if httpLn == nil {
		var err error
		if httpLn, err = net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(o.ingressHTTP))); err != nil {
			log.Error("this node does not serve Ingresses", "err", err)
			return nil
		}
		if httpsLn, err = net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(o.ingressHTTPS))); err != nil {
			httpLn.Close()
			log.Error("this node does not serve Ingresses", "err", err)
			return nil
		}
	}
	cfg := ingressproxy.Config{Logger: log, Registerer: reg, HTTPSPort: o.ingressHTTPS}
	closeLog := func() {}
	switch o.ingressAccessLog {
	case "":
	case "-":
		cfg.AccessLog = os.Stdout
	default:
		f, err := os.OpenFile(o.ingressAccessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			log.Error("Ingress access log", "err", err)
		} else {
			cfg.AccessLog = f
			closeLog = func() { f.Close() }
		}
	}
	proxy, err := ingressproxy.New(cfg)
	if err != nil {
		httpLn.Close()
		httpsLn.Close()
		log.Error("this node does not serve Ingresses", "err", err)
		return nil
	}
	parts.proxy = proxy
	wg.Go(func() {
		if err := proxy.Serve(httpLn, httpsLn); err != nil && ctx.Err() == nil {
			log.Error("Ingress proxy stopped", "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = proxy.Shutdown(sctx)
		_ = proxy.Close()
		closeLog()
		if parts.steer != nil {
			_ = parts.steer.Close() // the program stays; closed listeners fall through
		}
	})
	how := "bound on every address"
	if parts.steer != nil {
		how = "steered by sk_lookup"
	}
	log.Info("serving Ingresses", "http-port", o.ingressHTTP, "https-port", o.ingressHTTPS, "listeners", how, "node-addresses", nodeAddrs)
	return parts
}
