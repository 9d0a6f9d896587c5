package dns

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// ttl is the TTL of every cluster answer and of the zone's negative answers,
// as CoreDNS's kubernetes plugin has by default.
const ttl = 5

// dnsSchemaVersion is the version of the Kubernetes DNS specification served
// at dns-version.<zone>.
const dnsSchemaVersion = "1.1.0"

// maxChain bounds the CNAME chain followed inside the zone (an ExternalName
// service naming another one), so that a loop of ExternalNames ends.
const maxChain = 8

// view is the agent's services and pods indexed by DNS name. It is built
// once by newView and never changed afterwards, so any number of queries can
// read it at once.
type view struct {
	zone     string // lower case, fully qualified: "cluster.local."
	serial   uint32
	insecure bool // pods insecure: answer any well-formed ns.pod name

	names map[string]*rrset // lower-case owner name → its records
	// ents are the names that have names below them but no records of their
	// own (empty non-terminals): NOERROR/no data instead of NXDOMAIN.
	ents map[string]struct{}
	// PTR targets by address, in the order they are looked at.
	ptrSvc, ptrEp, ptrPod map[netip.Addr][]string
}

// rrset holds the records of one name.
type rrset struct {
	addrs []netip.Addr // A and AAAA
	cname string       // ExternalName target, fully qualified
	srv   []srvTarget
	txt   []string
}

type srvTarget struct {
	target string // fully qualified, lower case
	port   uint16
}

// viewOptions are the parts of the configuration the view depends on.
type viewOptions struct {
	zone         string       // fully qualified, lower case
	serial       uint32       // SOA serial
	insecurePods bool         // see Config.InsecurePods
	nsAddrs      []netip.Addr // the server's own addresses, for ns.dns.<zone>
}

// newView indexes svcs and pods. Services and pods with missing names or
// unusable addresses are left out; an ExternalName that is not a domain name
// is too.
func newView(opts viewOptions, svcs []Service, pods []Pod) *view {
	v := &view{
		zone:     opts.zone,
		serial:   opts.serial,
		insecure: opts.insecurePods,
		names:    make(map[string]*rrset, len(svcs)*2+len(pods)),
		ents:     make(map[string]struct{}),
		ptrSvc:   make(map[netip.Addr][]string, len(svcs)),
		ptrEp:    make(map[netip.Addr][]string),
		ptrPod:   make(map[netip.Addr][]string, len(pods)),
	}
	set := func(name string) *rrset {
		rs := v.names[name]
		if rs == nil {
			rs = &rrset{}
			v.names[name] = rs
		}
		return rs
	}

	set("dns-version." + v.zone).txt = []string{dnsSchemaVersion}
	for _, a := range opts.nsAddrs {
		if a.IsValid() && !a.IsUnspecified() {
			rs := set(nsName(v.zone))
			rs.addrs = append(rs.addrs, a.Unmap())
		}
	}

	for i := range svcs {
		svc := &svcs[i]
		ns, name := strings.ToLower(svc.Namespace), strings.ToLower(svc.Name)
		if !isLabel(ns) || !isLabel(name) {
			continue
		}
		base := name + "." + ns + ".svc." + v.zone
		switch {
		case svc.ExternalName != "":
			target := dns.Fqdn(strings.ToLower(svc.ExternalName))
			if _, err := netip.ParseAddr(svc.ExternalName); err == nil {
				continue // an address is not a CNAME target (CoreDNS skips it too)
			}
			if _, ok := dns.IsDomainName(target); !ok || target == "." {
				continue
			}
			set(base).cname = target
			continue
		case svc.ClusterIP.IsValid():
			ip := svc.ClusterIP.Unmap()
			rs := set(base)
			rs.addrs = append(rs.addrs, ip)
			for _, p := range svc.Ports {
				rs.srv = append(rs.srv, srvTarget{base, p.Port})
				if pn := portName(p); pn != "" {
					pr := set(pn + "." + base)
					pr.srv = append(pr.srv, srvTarget{base, p.Port})
				}
			}
			v.ptrSvc[ip] = append(v.ptrSvc[ip], base)
		}
		headless := !svc.ClusterIP.IsValid()
		for j := range svc.Endpoints {
			ep := &svc.Endpoints[j]
			if !ep.IP.IsValid() || !(ep.Ready || svc.PublishNotReadyAddresses) {
				continue
			}
			ip := ep.IP.Unmap()
			epName := endpointName(ep.Hostname, ip) + "." + base
			er := set(epName)
			er.addrs = append(er.addrs, ip)
			v.ptrEp[ip] = append(v.ptrEp[ip], epName)
			if !headless {
				continue // a ClusterIP service's own names point to the ClusterIP
			}
			rs := set(base)
			rs.addrs = append(rs.addrs, ip)
			ports := ep.Ports
			if len(ports) == 0 {
				ports = svc.Ports
			}
			for _, p := range ports {
				rs.srv = append(rs.srv, srvTarget{epName, p.Port})
				if pn := portName(p); pn != "" {
					pr := set(pn + "." + base)
					pr.srv = append(pr.srv, srvTarget{epName, p.Port})
				}
			}
		}
	}

	for _, p := range pods {
		ns := strings.ToLower(p.Namespace)
		if !p.IP.IsValid() || !isLabel(ns) {
			continue
		}
		ip := p.IP.Unmap()
		name := dashed(ip) + "." + ns + ".pod." + v.zone
		rs := set(name)
		rs.addrs = append(rs.addrs, ip)
		v.ptrPod[ip] = append(v.ptrPod[ip], name)
	}

	// Sorted and without duplicates, so that answers do not depend on the
	// order of the input (the server shuffles addresses per answer).
	for _, rs := range v.names {
		slices.SortFunc(rs.addrs, netip.Addr.Compare)
		rs.addrs = slices.Compact(rs.addrs)
		slices.SortFunc(rs.srv, func(a, b srvTarget) int {
			return cmp.Or(strings.Compare(a.target, b.target), cmp.Compare(a.port, b.port))
		})
		rs.srv = slices.Compact(rs.srv)
	}
	for _, m := range []map[netip.Addr][]string{v.ptrSvc, v.ptrEp, v.ptrPod} {
		for ip, names := range m {
			slices.Sort(names)
			m[ip] = slices.Compact(names)
		}
	}

	// Every ancestor of a name, up to the apex, exists.
	v.ents[v.zone] = struct{}{}
	v.ents["svc."+v.zone] = struct{}{}
	v.ents["pod."+v.zone] = struct{}{}
	for name := range v.names {
		for parent := parentName(name); len(parent) > len(v.zone); parent = parentName(parent) {
			if _, ok := v.ents[parent]; ok {
				break // its own ancestors are in already
			}
			v.ents[parent] = struct{}{}
		}
	}
	for name := range v.names {
		delete(v.ents, name)
	}
	return v
}

// reply is the answer of the view to one question.
type reply struct {
	// handled is false when the name is not the view's to answer (outside the
	// zone, or a PTR of an address the view does not know): forward it.
	handled bool
	rcode   int
	answer  []dns.RR
	ns      []dns.RR
	extra   []dns.RR
	// chase, when set, is a CNAME target outside the zone (the last record of
	// answer): the server resolves it upstream and appends what it gets.
	chase string
}

// lookup answers q from the view. It is a pure function: the same view and
// question always give the same reply, and the records returned are new.
func (v *view) lookup(q dns.Question) reply {
	name := strings.ToLower(dns.Fqdn(q.Name))
	if name != v.zone && !strings.HasSuffix(name, "."+v.zone) {
		return v.reverse(q, name)
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return reply{handled: true, rcode: dns.RcodeRefused}
	}
	return v.answer(q.Name, name, q.Qtype, 0)
}

// answer answers for name (owner is name as the client wrote it).
func (v *view) answer(owner, name string, qtype uint16, depth int) reply {
	rs := v.names[name]
	if rs == nil && v.insecure {
		rs = v.insecurePod(name)
	}
	if rs == nil {
		if _, ok := v.ents[name]; ok {
			return v.noData(owner, name, qtype)
		}
		return reply{handled: true, rcode: dns.RcodeNameError, ns: []dns.RR{v.soa()}}
	}

	if rs.cname != "" && qtype != dns.TypeCNAME {
		cname := &dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME), Target: rs.cname}
		t := rs.cname
		switch {
		case t != v.zone && !strings.HasSuffix(t, "."+v.zone):
			return reply{handled: true, rcode: dns.RcodeSuccess, answer: []dns.RR{cname}, chase: t}
		case depth >= maxChain:
			// A loop of ExternalNames: give what there is, as a server
			// that stops following a long chain does.
			return reply{handled: true, rcode: dns.RcodeSuccess, answer: []dns.RR{cname}}
		}
		r := v.answer(t, t, qtype, depth+1)
		r.answer = append([]dns.RR{cname}, r.answer...)
		return r
	}

	r := reply{handled: true, rcode: dns.RcodeSuccess}
	switch qtype {
	case dns.TypeA, dns.TypeAAAA:
		r.answer = addrRecords(owner, rs.addrs, qtype)
	case dns.TypeSRV:
		r.answer, r.extra = v.srvRecords(owner, rs.srv)
	case dns.TypeTXT:
		for _, t := range rs.txt {
			r.answer = append(r.answer, &dns.TXT{Hdr: hdr(owner, dns.TypeTXT), Txt: []string{t}})
		}
	case dns.TypeCNAME:
		if rs.cname != "" {
			r.answer = []dns.RR{&dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME), Target: rs.cname}}
		}
	case dns.TypeANY:
		r.answer = append(addrRecords(owner, rs.addrs, dns.TypeA), addrRecords(owner, rs.addrs, dns.TypeAAAA)...)
		srv, _ := v.srvRecords(owner, rs.srv)
		r.answer = append(r.answer, srv...)
		for _, t := range rs.txt {
			r.answer = append(r.answer, &dns.TXT{Hdr: hdr(owner, dns.TypeTXT), Txt: []string{t}})
		}
	}
	if len(r.answer) == 0 {
		return v.noData(owner, name, qtype)
	}
	return r
}

// noData answers a name that exists but has no records of qtype, except for
// the SOA and NS of the apex itself.
func (v *view) noData(owner, name string, qtype uint16) reply {
	r := reply{handled: true, rcode: dns.RcodeSuccess}
	if name == v.zone {
		switch qtype {
		case dns.TypeSOA:
			soa := v.soa()
			soa.Hdr.Name = owner
			r.answer = []dns.RR{soa}
			return r
		case dns.TypeNS:
			r.answer = []dns.RR{&dns.NS{Hdr: hdr(owner, dns.TypeNS), Ns: nsName(v.zone)}}
			if rs := v.names[nsName(v.zone)]; rs != nil {
				r.extra = append(addrRecords(nsName(v.zone), rs.addrs, dns.TypeA), addrRecords(nsName(v.zone), rs.addrs, dns.TypeAAAA)...)
			}
			return r
		}
	}
	r.ns = []dns.RR{v.soa()}
	return r
}

// reverse answers a PTR query for an address the view knows, and leaves
// every other name outside the zone to the upstreams.
func (v *view) reverse(q dns.Question, name string) reply {
	if q.Qtype != dns.TypePTR || q.Qclass != dns.ClassINET {
		return reply{}
	}
	ip, ok := reverseAddr(name)
	if !ok {
		return reply{}
	}
	targets := v.ptrSvc[ip]
	if len(targets) == 0 {
		targets = v.ptrEp[ip]
	}
	if len(targets) == 0 {
		targets = v.ptrPod[ip]
	}
	if len(targets) == 0 {
		return reply{}
	}
	r := reply{handled: true, rcode: dns.RcodeSuccess}
	for _, t := range targets {
		r.answer = append(r.answer, &dns.PTR{Hdr: hdr(q.Name, dns.TypePTR), Ptr: t})
	}
	return r
}

// srvRecords returns the SRV records of targets and, for the additional
// section, the addresses of the targets that are in the view.
func (v *view) srvRecords(owner string, targets []srvTarget) (answer, extra []dns.RR) {
	if len(targets) == 0 {
		return nil, nil
	}
	weight := uint16(max(1, 100/len(targets)))
	seen := make(map[string]bool)
	for _, t := range targets {
		answer = append(answer, &dns.SRV{Hdr: hdr(owner, dns.TypeSRV), Priority: 0, Weight: weight, Port: t.port, Target: t.target})
		if seen[t.target] {
			continue
		}
		seen[t.target] = true
		if rs := v.names[t.target]; rs != nil {
			extra = append(extra, addrRecords(t.target, rs.addrs, dns.TypeA)...)
			extra = append(extra, addrRecords(t.target, rs.addrs, dns.TypeAAAA)...)
		}
	}
	return answer, extra
}

// insecurePod makes the record of a well-formed pod name (10-1-2-3.ns.pod.<zone>)
// that is not in the view, as CoreDNS's "pods insecure" does.
func (v *view) insecurePod(name string) *rrset {
	rest, ok := strings.CutSuffix(name, ".pod."+v.zone)
	if !ok {
		return nil
	}
	label, ns, ok := strings.Cut(rest, ".")
	if !ok || !isLabel(ns) {
		return nil
	}
	var ip netip.Addr
	var err error
	if strings.Count(label, "-") == 3 && !strings.Contains(label, "--") {
		ip, err = netip.ParseAddr(strings.ReplaceAll(label, "-", "."))
		if err == nil && !ip.Is4() {
			return nil
		}
	} else {
		ip, err = netip.ParseAddr(strings.ReplaceAll(label, "-", ":"))
		if err == nil && !ip.Is6() {
			return nil
		}
	}
	if err != nil {
		return nil
	}
	return &rrset{addrs: []netip.Addr{ip}}
}

// soa is the zone's SOA record; its TTL and minimum bound negative caching.
func (v *view) soa() *dns.SOA {
	return &dns.SOA{
		Hdr:     hdr(v.zone, dns.TypeSOA),
		Ns:      nsName(v.zone),
		Mbox:    "hostmaster." + v.zone,
		Serial:  v.serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  ttl,
	}
}

func hdr(owner string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// addrRecords returns the A (or AAAA) records of the addresses of that family.
func addrRecords(owner string, addrs []netip.Addr, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, a := range addrs {
		switch {
		case qtype == dns.TypeA && a.Is4():
			out = append(out, &dns.A{Hdr: hdr(owner, dns.TypeA), A: a.AsSlice()})
		case qtype == dns.TypeAAAA && a.Is6():
			out = append(out, &dns.AAAA{Hdr: hdr(owner, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return out
}

// portName is the _name._proto prefix of a named port ("" for an unnamed one).
func portName(p Port) string {
	if p.Name == "" {
		return ""
	}
	proto := strings.ToLower(p.Protocol)
	if proto == "" {
		proto = "tcp"
	}
	return "_" + strings.ToLower(p.Name) + "._" + proto
}

// endpointName is the label of an endpoint under its service: its hostname,
// or else its address with dashes, as CoreDNS names them.
func endpointName(hostname string, ip netip.Addr) string {
	if h := strings.ToLower(hostname); isLabel(h) {
		return h
	}
	return dashed(ip)
}

// dashed writes an address with dashes for dots or colons: 10-1-2-3, fd00--1.
func dashed(ip netip.Addr) string {
	if ip.Is4() {
		return strings.ReplaceAll(ip.String(), ".", "-")
	}
	return strings.ReplaceAll(ip.WithZone("").String(), ":", "-")
}

func nsName(zone string) string { return "ns.dns." + zone }

// isLabel reports whether s can be one label of a name.
func isLabel(s string) bool {
	return s != "" && len(s) <= 63 && !strings.ContainsAny(s, ". \t\\")
}

// parentName returns name without its first label ("" for the root).
func parentName(name string) string {
	_, parent, ok := strings.Cut(name, ".")
	if !ok {
		return ""
	}
	return parent
}

// reverseAddr parses a lower-case in-addr.arpa. or ip6.arpa. name.
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		labels := strings.Split(rest, ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, l := range labels {
			n, err := strconv.ParseUint(l, 10, 8)
			if err != nil || (len(l) > 1 && l[0] == '0') {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		labels := strings.Split(rest, ".")
		if len(labels) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, false
			}
			n, err := strconv.ParseUint(l, 16, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			j := 31 - i // nibble index from the most significant one
			b[j/2] |= byte(n) << (4 * (1 - j%2))
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
