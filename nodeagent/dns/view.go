package dns

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

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

// view is the agent's services and pods, indexed for lookup. It is built by
// newView and never changed afterwards (but for the PTR index, made once on
// the first PTR query), so any number of queries can read it at once.
//
// Names are not stored: a query name is parsed (as CoreDNS does) into the
// service, endpoint, port or pod it names. A view of 10,000 services takes a
// few megabytes and is built in a few milliseconds.
type view struct {
	zone     string // lower case, fully qualified: "cluster.local."
	serial   uint32
	insecure bool         // pods insecure: answer any well-formed ns.pod name
	nsAddrs  []netip.Addr // the server's own addresses, for ns.dns.<zone>

	services map[string]map[string]*svcEntry // namespace → name → service
	pods     map[podKey]struct{}
	podNS    map[string]struct{} // namespaces with pods

	ptrOnce sync.Once
	ptr     map[netip.Addr]ptrTarget
}

// svcEntry is what the view keeps of a Service: lower-case names, the
// published endpoints only, sorted.
type svcEntry struct {
	name, ns  string
	clusterIP netip.Addr   // invalid: headless
	cname     string       // ExternalName target, fully qualified
	ports     []portEntry  // sorted by number
	eps       []epEntry    // published endpoints, sorted by name then address
	addrs     []netip.Addr // headless: the endpoints' addresses, sorted, unique
}

type portEntry struct {
	name, proto string // lower case
	port        uint16
}

type epEntry struct {
	hostname string // lower case; "" when named by its address
	ip       netip.Addr
	ports    []portEntry // nil: the service's ports
}

type podKey struct {
	ns string
	ip netip.Addr
}

type ptrTarget struct {
	rank int // 0 ClusterIP, 1 endpoint, 2 pod: the lowest answers
	name string
}

// viewOptions are the parts of the configuration the view depends on.
type viewOptions struct {
	zone         string       // fully qualified, lower case
	serial       uint32       // SOA serial
	insecurePods bool         // see Config.InsecurePods
	nsAddrs      []netip.Addr // the server's own addresses, for ns.dns.<zone>
}

// newView indexes svcs and pods; it keeps no slice of theirs. Services and
// pods with names that cannot be labels are left out, as is an ExternalName
// that is not a domain name, a headless service without published endpoints
// (CoreDNS answers NXDOMAIN for it too), and every service but the first of
// a namespace and name given twice.
func newView(opts viewOptions, svcs []Service, pods []Pod) *view {
	v := &view{
		zone:     opts.zone,
		serial:   opts.serial,
		insecure: opts.insecurePods,
		services: make(map[string]map[string]*svcEntry),
		pods:     make(map[podKey]struct{}, len(pods)),
		podNS:    make(map[string]struct{}),
	}
	for _, a := range opts.nsAddrs {
		if a.IsValid() && !a.IsUnspecified() {
			v.nsAddrs = append(v.nsAddrs, a.Unmap())
		}
	}
	slices.SortFunc(v.nsAddrs, netip.Addr.Compare)
	v.nsAddrs = slices.Compact(v.nsAddrs)

	for i := range svcs {
		e := newSvcEntry(&svcs[i])
		if e == nil {
			continue
		}
		names := v.services[e.ns]
		if names == nil {
			names = make(map[string]*svcEntry)
			v.services[e.ns] = names
		}
		if _, dup := names[e.name]; !dup {
			names[e.name] = e
		}
	}
	for _, p := range pods {
		ns := strings.ToLower(p.Namespace)
		if !p.IP.IsValid() || !isLabel(ns) {
			continue
		}
		v.pods[podKey{ns, p.IP.Unmap()}] = struct{}{}
		v.podNS[ns] = struct{}{}
	}
	return v
}

func newSvcEntry(svc *Service) *svcEntry {
	e := &svcEntry{name: strings.ToLower(svc.Name), ns: strings.ToLower(svc.Namespace)}
	if !isLabel(e.ns) || !isLabel(e.name) {
		return nil
	}
	if svc.ExternalName != "" {
		if _, err := netip.ParseAddr(svc.ExternalName); err == nil {
			return nil // an address is not a CNAME target (CoreDNS skips it too)
		}
		target := dns.Fqdn(strings.ToLower(svc.ExternalName))
		if _, ok := dns.IsDomainName(target); !ok || target == "." {
			return nil
		}
		e.cname = target
		return e
	}
	e.clusterIP = svc.ClusterIP.Unmap()
	e.ports = portEntries(svc.Ports)
	var last []Port
	var lastEntries []portEntry
	for _, ep := range svc.Endpoints {
		if !ep.IP.IsValid() || !(ep.Ready || svc.PublishNotReadyAddresses) {
			continue
		}
		h := strings.ToLower(ep.Hostname)
		if !isLabel(h) || strings.HasPrefix(h, "_") {
			h = ""
		}
		// Endpoints of a service mostly have the same ports: share them.
		if !slices.Equal(ep.Ports, last) {
			last, lastEntries = ep.Ports, portEntries(ep.Ports)
		}
		e.eps = append(e.eps, epEntry{hostname: h, ip: ep.IP.Unmap(), ports: lastEntries})
	}
	slices.SortFunc(e.eps, func(a, b epEntry) int {
		return cmp.Or(strings.Compare(a.hostname, b.hostname), a.ip.Compare(b.ip))
	})
	if !e.clusterIP.IsValid() {
		if len(e.eps) == 0 {
			return nil
		}
		for _, ep := range e.eps {
			e.addrs = append(e.addrs, ep.ip)
		}
		slices.SortFunc(e.addrs, netip.Addr.Compare)
		e.addrs = slices.Compact(e.addrs)
	}
	return e
}

func portEntries(ports []Port) []portEntry {
	if len(ports) == 0 {
		return nil
	}
	out := make([]portEntry, 0, len(ports))
	for _, p := range ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, portEntry{name: strings.ToLower(p.Name), proto: proto, port: p.Port})
	}
	slices.SortFunc(out, func(a, b portEntry) int {
		return cmp.Or(cmp.Compare(a.port, b.port), strings.Compare(a.proto, b.proto), strings.Compare(a.name, b.name))
	})
	return slices.Compact(out)
}

// fqdn is the service's name: name.ns.svc.<zone>.
func (e *svcEntry) fqdn(zone string) string { return e.name + "." + e.ns + ".svc." + zone }

// label is the endpoint's name under its service: its hostname, or else
// its address with dashes, as CoreDNS names them.
func (ep *epEntry) label() string {
	if ep.hostname != "" {
		return ep.hostname
	}
	return dashed(ep.ip)
}

// epPorts are the ports of an endpoint of e.
func (e *svcEntry) epPorts(ep *epEntry) []portEntry {
	if ep.ports != nil {
		return ep.ports
	}
	return e.ports
}

// endpoints returns the published endpoints named label (several when they
// share a hostname).
func (e *svcEntry) endpoints(label string) []epEntry {
	if ip, ok := undash(label); ok {
		i, found := slices.BinarySearchFunc(e.eps, epEntry{ip: ip}, func(a, b epEntry) int {
			return cmp.Or(strings.Compare(a.hostname, b.hostname), a.ip.Compare(b.ip))
		})
		if found {
			return e.eps[i : i+1]
		}
	}
	lo, _ := slices.BinarySearchFunc(e.eps, label, func(a epEntry, l string) int { return strings.Compare(a.hostname, l) })
	hi := lo
	for hi < len(e.eps) && e.eps[hi].hostname == label {
		hi++
	}
	return e.eps[lo:hi]
}

// hasPort reports whether e has a named port name/proto ("" matches any
// name): its own for a ClusterIP service, its endpoints' for a headless one.
func (e *svcEntry) hasPort(name, proto string) bool {
	match := func(ports []portEntry) bool {
		return slices.ContainsFunc(ports, func(p portEntry) bool {
			return p.name != "" && p.proto == proto && (name == "" || p.name == name)
		})
	}
	if e.clusterIP.IsValid() {
		return match(e.ports)
	}
	for i := range e.eps {
		if match(e.epPorts(&e.eps[i])) {
			return true
		}
	}
	return false
}

// nodeKind is what a name of the zone stands for.
type nodeKind int

const (
	kindNone    nodeKind = iota // nothing: NXDOMAIN
	kindEmpty                   // a name with names below it only
	kindApex                    // the zone itself
	kindVersion                 // dns-version.<zone>
	kindNS                      // ns.dns.<zone>
	kindSvc                     // svc.ns.svc.<zone>
	kindEp                      // ep.svc.ns.svc.<zone>
	kindPort                    // _port._proto.svc.ns.svc.<zone>
	kindPod                     // 1-2-3-4.ns.pod.<zone>
)

type node struct {
	kind        nodeKind
	svc         *svcEntry
	eps         []epEntry  // kindEp
	port, proto string     // kindPort
	pod         netip.Addr // kindPod
}

// find parses rest (a lower-case name of the zone without the zone, "" for
// the apex) into what it names.
func (v *view) find(rest string) node {
	switch rest {
	case "":
		return node{kind: kindApex}
	case "dns-version":
		return node{kind: kindVersion}
	case "svc", "pod":
		return node{kind: kindEmpty}
	case "ns.dns", "dns":
		if len(v.nsAddrs) == 0 {
			return node{}
		}
		if rest == "dns" {
			return node{kind: kindEmpty}
		}
		return node{kind: kindNS}
	}
	// No name of the zone has more than five labels below it.
	var buf [5]string
	labels, ok := splitLabels(rest, buf[:0])
	if !ok {
		return node{}
	}
	n := len(labels)
	switch labels[n-1] {
	case "svc":
		names := v.services[labels[n-2]]
		if names == nil {
			return node{}
		}
		if n == 2 {
			return node{kind: kindEmpty}
		}
		svc := names[labels[n-3]]
		if svc == nil {
			return node{}
		}
		switch {
		case n == 3:
			return node{kind: kindSvc, svc: svc}
		case svc.cname != "":
			return node{} // an ExternalName has nothing below it
		case n == 4 && strings.HasPrefix(labels[0], "_"):
			if svc.hasPort("", labels[0][1:]) {
				return node{kind: kindEmpty} // _proto, above _port._proto
			}
		case n == 4:
			if eps := svc.endpoints(labels[0]); len(eps) > 0 {
				return node{kind: kindEp, svc: svc, eps: eps}
			}
		case n == 5 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_"):
			port, proto := labels[0][1:], labels[1][1:]
			if port != "" && svc.hasPort(port, proto) {
				return node{kind: kindPort, svc: svc, port: port, proto: proto}
			}
		}
	case "pod":
		ns := labels[n-2]
		if n == 2 {
			if _, ok := v.podNS[ns]; ok || v.insecure {
				return node{kind: kindEmpty}
			}
			return node{}
		}
		if n != 3 {
			return node{}
		}
		ip, ok := undash(labels[0])
		if !ok {
			return node{}
		}
		if _, known := v.pods[podKey{ns, ip}]; known || v.insecure {
			return node{kind: kindPod, pod: ip}
		}
	}
	return node{}
}

// splitLabels splits name into its labels, in labels' room, and reports
// false if they do not fit.
func splitLabels(name string, labels []string) ([]string, bool) {
	for {
		if len(labels) == cap(labels) {
			return nil, false
		}
		label, rest, more := strings.Cut(name, ".")
		labels = append(labels, label)
		if !more {
			return labels, true
		}
		name = rest
	}
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
	nd := v.find(strings.TrimSuffix(strings.TrimSuffix(name, v.zone), "."))
	if nd.kind == kindNone {
		return reply{handled: true, rcode: dns.RcodeNameError, ns: []dns.RR{v.soa()}}
	}

	if nd.kind == kindSvc && nd.svc.cname != "" && qtype != dns.TypeCNAME {
		cname := &dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME), Target: nd.svc.cname}
		t := nd.svc.cname
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
	addrs := func(qtype uint16) []dns.RR { return addrRecords(owner, v.addrs(nd), qtype) }
	switch qtype {
	case dns.TypeA, dns.TypeAAAA:
		r.answer = addrs(qtype)
	case dns.TypeSRV:
		r.answer, r.extra = v.srv(owner, nd)
	case dns.TypeTXT:
		r.answer = v.txt(owner, nd)
	case dns.TypeCNAME:
		if nd.kind == kindSvc && nd.svc.cname != "" {
			r.answer = []dns.RR{&dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME), Target: nd.svc.cname}}
		}
	case dns.TypeSOA:
		if nd.kind == kindApex {
			soa := v.soa()
			soa.Hdr.Name = owner
			r.answer = []dns.RR{soa}
		}
	case dns.TypeNS:
		if nd.kind == kindApex {
			r.answer = []dns.RR{&dns.NS{Hdr: hdr(owner, dns.TypeNS), Ns: nsName(v.zone)}}
			r.extra = append(addrRecords(nsName(v.zone), v.nsAddrs, dns.TypeA), addrRecords(nsName(v.zone), v.nsAddrs, dns.TypeAAAA)...)
		}
	case dns.TypeANY:
		srv, _ := v.srv(owner, nd)
		r.answer = slices.Concat(addrs(dns.TypeA), addrs(dns.TypeAAAA), srv, v.txt(owner, nd))
	}
	if len(r.answer) == 0 {
		return reply{handled: true, rcode: dns.RcodeSuccess, ns: []dns.RR{v.soa()}}
	}
	return r
}

// addrs returns the addresses of a node, sorted.
func (v *view) addrs(nd node) []netip.Addr {
	switch nd.kind {
	case kindSvc:
		if nd.svc.clusterIP.IsValid() {
			return []netip.Addr{nd.svc.clusterIP}
		}
		return nd.svc.addrs
	case kindEp:
		out := make([]netip.Addr, 0, len(nd.eps))
		for _, ep := range nd.eps {
			out = append(out, ep.ip)
		}
		return out // sorted, as eps are
	case kindPod:
		return []netip.Addr{nd.pod}
	case kindNS:
		return v.nsAddrs
	}
	return nil
}

func (v *view) txt(owner string, nd node) []dns.RR {
	if nd.kind != kindVersion {
		return nil
	}
	return []dns.RR{&dns.TXT{Hdr: hdr(owner, dns.TypeTXT), Txt: []string{dnsSchemaVersion}}}
}

type srvTarget struct {
	target string
	port   uint16
	ips    []netip.Addr
}

// srv returns the SRV records of a service (every port) or of one of its
// named ports, and the targets' addresses for the additional section: the
// service and its ports for a ClusterIP service, each endpoint and its
// ports for a headless one.
func (v *view) srv(owner string, nd node) (answer, extra []dns.RR) {
	if nd.kind != kindSvc && nd.kind != kindPort {
		return nil, nil
	}
	svc := nd.svc
	match := func(p portEntry) bool {
		return nd.kind == kindSvc || (p.name == nd.port && p.proto == nd.proto)
	}
	var targets []srvTarget
	if svc.clusterIP.IsValid() {
		base := svc.fqdn(v.zone)
		for _, p := range svc.ports {
			if match(p) {
				targets = append(targets, srvTarget{base, p.port, []netip.Addr{svc.clusterIP}})
			}
		}
	} else {
		base := svc.fqdn(v.zone)
		for i := range svc.eps {
			ep := &svc.eps[i]
			for _, p := range svc.epPorts(ep) {
				if match(p) {
					targets = append(targets, srvTarget{ep.label() + "." + base, p.port, []netip.Addr{ep.ip}})
				}
			}
		}
	}
	if len(targets) == 0 {
		return nil, nil
	}
	slices.SortFunc(targets, func(a, b srvTarget) int {
		return cmp.Or(strings.Compare(a.target, b.target), cmp.Compare(a.port, b.port), a.ips[0].Compare(b.ips[0]))
	})
	// The addresses of each target (endpoints can share a hostname), and
	// one record per target and port.
	byTarget := make(map[string][]netip.Addr)
	var names []string
	for _, t := range targets {
		if _, ok := byTarget[t.target]; !ok {
			names = append(names, t.target)
		}
		byTarget[t.target] = append(byTarget[t.target], t.ips...)
	}
	targets = slices.CompactFunc(targets, func(a, b srvTarget) bool { return a.target == b.target && a.port == b.port })
	weight := uint16(max(1, 100/len(targets)))
	for _, t := range targets {
		answer = append(answer, &dns.SRV{Hdr: hdr(owner, dns.TypeSRV), Priority: 0, Weight: weight, Port: t.port, Target: t.target})
	}
	for _, name := range names {
		ips := slices.Compact(byTarget[name])
		extra = append(extra, addrRecords(name, ips, dns.TypeA)...)
		extra = append(extra, addrRecords(name, ips, dns.TypeAAAA)...)
	}
	return answer, extra
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
	t, ok := v.ptrIndex()[ip]
	if !ok {
		return reply{}
	}
	return reply{handled: true, rcode: dns.RcodeSuccess, answer: []dns.RR{&dns.PTR{Hdr: hdr(q.Name, dns.TypePTR), Ptr: t.name}}}
}

// ptrIndex returns the name of each address: a service's for a ClusterIP,
// else an endpoint's, else a pod's; the first in name order when several
// services or endpoints have it. It is made on the first call, so that views
// that are never asked a PTR cost nothing for it.
func (v *view) ptrIndex() map[netip.Addr]ptrTarget {
	v.ptrOnce.Do(func() {
		m := make(map[netip.Addr]ptrTarget)
		offer := func(ip netip.Addr, rank int, name string) {
			cur, ok := m[ip]
			if !ok || rank < cur.rank || (rank == cur.rank && name < cur.name) {
				m[ip] = ptrTarget{rank, name}
			}
		}
		for _, names := range v.services {
			for _, svc := range names {
				base := svc.fqdn(v.zone)
				if svc.clusterIP.IsValid() {
					offer(svc.clusterIP, 0, base)
				}
				for i := range svc.eps {
					offer(svc.eps[i].ip, 1, svc.eps[i].label()+"."+base)
				}
			}
		}
		for k := range v.pods {
			offer(k.ip, 2, dashed(k.ip)+"."+k.ns+".pod."+v.zone)
		}
		v.ptr = m
	})
	return v.ptr
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

// dashed writes an address with dashes for dots or colons: 10-1-2-3, fd00--1.
func dashed(ip netip.Addr) string {
	if ip.Is4() {
		return strings.ReplaceAll(ip.String(), ".", "-")
	}
	return strings.ReplaceAll(ip.WithZone("").String(), ":", "-")
}

// undash parses an address written by dashed.
func undash(label string) (netip.Addr, bool) {
	if strings.Count(label, "-") == 3 && !strings.Contains(label, "--") {
		ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", "."))
		return ip, err == nil && ip.Is4()
	}
	if !strings.Contains(label, "-") {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":"))
	return ip, err == nil && ip.Is6() && ip.Zone() == ""
}

func nsName(zone string) string { return "ns.dns." + zone }

// isLabel reports whether s can be one label of a name.
func isLabel(s string) bool {
	return s != "" && len(s) <= 63 && !strings.ContainsAny(s, ". \t\\")
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
