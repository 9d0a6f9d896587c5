package reconciler

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// ServiceNetwork is where Services get their cluster addresses, node ports
// and LoadBalancer addresses.
type ServiceNetwork struct {
	// CIDR holds the ClusterIPs (--service-cidr).
	CIDR netip.Prefix
	// NodePortMin and NodePortMax bound the node ports (inclusive).
	NodePortMin, NodePortMax int32
	// LoadBalancerPool holds the addresses LoadBalancer services get
	// (--loadbalancer-pool). Empty: such services stay pending.
	LoadBalancerPool []netip.Prefix
}

// DefaultServiceNetwork is Kubernetes' default service network.
func DefaultServiceNetwork() ServiceNetwork {
	return ServiceNetwork{CIDR: netip.MustParsePrefix("10.96.0.0/12"), NodePortMin: 30000, NodePortMax: 32767}
}

// ParseServiceNetwork reads the controller's flags: an IPv4 CIDR, a node port
// range "MIN-MAX" and a comma-separated list of CIDRs or single addresses.
func ParseServiceNetwork(cidr, nodePorts, pool string) (ServiceNetwork, error) {
	n := DefaultServiceNetwork()
	if cidr != "" {
		p, err := netip.ParsePrefix(cidr)
		if err != nil || !p.Addr().Is4() || p.Bits() > 28 {
			return n, fmt.Errorf("--service-cidr %q: want an IPv4 CIDR of at least 16 addresses, such as 10.96.0.0/12", cidr)
		}
		n.CIDR = p.Masked()
	}
	if nodePorts != "" {
		lo, hi, ok := strings.Cut(nodePorts, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := strconv.Atoi(strings.TrimSpace(hi))
		if !ok || err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
			return n, fmt.Errorf("--node-port-range %q: want MIN-MAX such as 30000-32767", nodePorts)
		}
		n.NodePortMin, n.NodePortMax = int32(a), int32(b)
	}
	for _, s := range strings.Split(pool, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			s += "/32"
		}
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return n, fmt.Errorf("--loadbalancer-pool %q: want IPv4 CIDRs or addresses, comma-separated", s)
		}
		if n.CIDR.Overlaps(p) {
			return n, fmt.Errorf("--loadbalancer-pool %s overlaps --service-cidr %s", p, n.CIDR)
		}
		n.LoadBalancerPool = append(n.LoadBalancerPool, p.Masked())
	}
	return n, nil
}

// serviceAllocator hands out addresses and ports for one revision. It is
// pure: it starts from what the kept services hold.
type serviceAllocator struct {
	net ServiceNetwork
	// who holds an address or port: "ip:1.2.3.4", "np:TCP/30080", "lb:1.2.3.4".
	owner map[string]string
}

func (a *serviceAllocator) take(key, who string) { a.owner[key] = who }

// allocateServices fills in the cluster address, node ports and
// LoadBalancer address of the Services the plan upserts, and returns an
// issue for every request that cannot be met (outside the range, taken).
// Services the plan keeps keep what they have; a changed Service keeps what
// it had where it still needs it; a new one gets an address derived from its
// name, so that a restarted controller gives the same address again unless
// two names collide. events gets warnings that do not reject the revision
// (an exhausted LoadBalancer pool leaves the service pending).
func allocateServices(n ServiceNetwork, current []*store.Object, plan *Plan) (issues []manifest.Issue, events []*store.Event) {
	a := &serviceAllocator{net: n, owner: map[string]string{}}
	changed := map[string]bool{}
	for _, o := range plan.Upserts {
		changed[o.Key] = true
	}
	for _, k := range plan.Deletes {
		changed[k] = true
	}
	prev := map[string]*corev1.Service{}
	for _, o := range current {
		svc, ok := o.Obj.(*corev1.Service)
		if !ok || o.OwnerKey != "" {
			continue
		}
		if changed[o.Key] {
			prev[o.Key] = svc
			continue
		}
		a.hold(o.Key, svc)
	}
	var ups []*store.Object
	for _, o := range plan.Upserts {
		if _, ok := o.Obj.(*corev1.Service); ok {
			ups = append(ups, o)
		}
	}
	sort.Slice(ups, func(i, j int) bool { return ups[i].Key < ups[j].Key })

	filled := map[string]*corev1.Service{}
	issue := func(o *store.Object, field, format string, args ...any) {
		issues = append(issues, manifest.Issue{Severity: manifest.SeverityError, File: o.File, Line: o.Line,
			Object: o.Kind + "/" + o.Namespace + "/" + o.Name, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	// Requests first: what a manifest asks for explicitly wins over what
	// the allocator would pick.
	for _, o := range ups {
		svc := o.Obj.(*corev1.Service).DeepCopy()
		filled[o.Key] = svc
		setServiceDefaults(svc)
		who := "Service " + o.Namespace + "/" + o.Name
		if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone && svc.Spec.Type != corev1.ServiceTypeExternalName {
			addr, err := netip.ParseAddr(ip)
			switch {
			case err != nil:
				issue(o, "spec.clusterIP", "%q is not an IP address", ip)
			case !a.usableClusterIP(addr):
				issue(o, "spec.clusterIP", "%s is not in the service range %s (--service-cidr)", ip, n.CIDR)
			case a.owner["ip:"+ip] != "":
				issue(o, "spec.clusterIP", "%s is already allocated to %s", ip, a.owner["ip:"+ip])
			default:
				a.take("ip:"+ip, who)
			}
		}
		if needsNodePorts(svc) {
			for i, p := range svc.Spec.Ports {
				if p.NodePort == 0 {
					continue
				}
				k := npKey(p.Protocol, p.NodePort)
				switch {
				case p.NodePort < n.NodePortMin || p.NodePort > n.NodePortMax:
					issue(o, fmt.Sprintf("spec.ports[%d].nodePort", i), "%d is outside the node port range %d-%d", p.NodePort, n.NodePortMin, n.NodePortMax)
				case a.owner[k] != "":
					issue(o, fmt.Sprintf("spec.ports[%d].nodePort", i), "%d/%s is already in use by %s", p.NodePort, p.Protocol, a.owner[k])
				default:
					a.take(k, who)
				}
			}
		}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerIP != "" {
			ip := svc.Spec.LoadBalancerIP
			addr, err := netip.ParseAddr(ip)
			switch {
			case err != nil:
				issue(o, "spec.loadBalancerIP", "%q is not an IP address", ip)
			case !a.inPool(addr):
				issue(o, "spec.loadBalancerIP", "%s is not in the LoadBalancer pool %s (--loadbalancer-pool)", ip, poolString(n.LoadBalancerPool))
			case a.owner["lb:"+ip] != "":
				issue(o, "spec.loadBalancerIP", "%s is already given to %s", ip, a.owner["lb:"+ip])
			default:
				a.take("lb:"+ip, who)
			}
		}
	}
	if len(issues) > 0 {
		return issues, nil
	}
	// Then what is left: the previous value if it is still free, else one
	// derived from the name.
	for _, o := range ups {
		svc := filled[o.Key]
		old := prev[o.Key]
		who := "Service " + o.Namespace + "/" + o.Name
		if svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP == "" {
			ip, ok := "", false
			if old != nil && old.Spec.ClusterIP != "" && old.Spec.ClusterIP != corev1.ClusterIPNone && a.owner["ip:"+old.Spec.ClusterIP] == "" {
				if addr, err := netip.ParseAddr(old.Spec.ClusterIP); err == nil && a.usableClusterIP(addr) {
					ip, ok = old.Spec.ClusterIP, true
				}
			}
			if !ok {
				ip, ok = a.pickClusterIP(o.Key)
			}
			if !ok {
				issue(o, "spec.clusterIP", "the service range %s is exhausted", n.CIDR)
				continue
			}
			a.take("ip:"+ip, who)
			svc.Spec.ClusterIP = ip
		}
		if svc.Spec.ClusterIP != "" {
			svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		}
		if needsNodePorts(svc) {
			for i := range svc.Spec.Ports {
				p := &svc.Spec.Ports[i]
				if p.NodePort != 0 {
					continue
				}
				if np := previousNodePort(old, p); np != 0 && np >= n.NodePortMin && np <= n.NodePortMax && a.owner[npKey(p.Protocol, np)] == "" {
					p.NodePort = np
				} else if np, ok := a.pickNodePort(o.Key, p); ok {
					p.NodePort = np
				} else {
					issue(o, fmt.Sprintf("spec.ports[%d].nodePort", i), "the node port range %d-%d is exhausted", n.NodePortMin, n.NodePortMax)
					continue
				}
				a.take(npKey(p.Protocol, p.NodePort), who)
			}
		}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			ip := svc.Spec.LoadBalancerIP
			if ip == "" && old != nil {
				if prevIP := lbIP(old); prevIP != "" && a.owner["lb:"+prevIP] == "" {
					if addr, err := netip.ParseAddr(prevIP); err == nil && a.inPool(addr) {
						ip = prevIP
					}
				}
			}
			if ip == "" {
				ip, _ = a.pickLB(o.Key)
			}
			if ip == "" {
				msg := "no LoadBalancer pool is configured (--loadbalancer-pool): the service has no external address"
				if len(n.LoadBalancerPool) > 0 {
					msg = "the LoadBalancer pool " + poolString(n.LoadBalancerPool) + " is exhausted: the service waits for a free address"
				}
				events = append(events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeWarning, Reason: "AllocationFailed", Message: msg})
			} else {
				a.take("lb:"+ip, who)
				svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptrTo(corev1.LoadBalancerIPModeVIP)}}
			}
		}
	}
	if len(issues) > 0 {
		return issues, nil
	}
	for _, o := range ups {
		o.Obj = filled[o.Key]
	}
	return nil, events
}

func ptrTo[T any](v T) *T { return &v }

// hold records what a kept service has.
func (a *serviceAllocator) hold(key string, svc *corev1.Service) {
	who := "Service " + strings.TrimPrefix(key, "Service/")
	if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		a.take("ip:"+ip, who)
	}
	if needsNodePorts(svc) {
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				a.take(npKey(p.Protocol, p.NodePort), who)
			}
		}
	}
	if ip := lbIP(svc); ip != "" {
		a.take("lb:"+ip, who)
	}
}

func (a *serviceAllocator) usableClusterIP(ip netip.Addr) bool {
	if !a.net.CIDR.Contains(ip) {
		return false
	}
	first, last := rangeOf(a.net.CIDR)
	return ip != first && ip != last
}

func (a *serviceAllocator) inPool(ip netip.Addr) bool {
	for _, p := range a.net.LoadBalancerPool {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// pickClusterIP probes from an address derived from the name.
func (a *serviceAllocator) pickClusterIP(key string) (string, bool) {
	first, _ := rangeOf(a.net.CIDR)
	size := uint64(1) << (32 - a.net.CIDR.Bits())
	base := addrToUint(first)
	start := nameHash(key) % size
	for i := uint64(0); i < size; i++ {
		ip := uintToAddr(base + uint32((start+i)%size))
		if a.usableClusterIP(ip) && a.owner["ip:"+ip.String()] == "" {
			return ip.String(), true
		}
	}
	return "", false
}

func (a *serviceAllocator) pickNodePort(key string, p *corev1.ServicePort) (int32, bool) {
	size := uint64(a.net.NodePortMax-a.net.NodePortMin) + 1
	start := nameHash(key+"/"+p.Name+"/"+string(p.Protocol)+"/"+strconv.Itoa(int(p.Port))) % size
	for i := uint64(0); i < size; i++ {
		np := a.net.NodePortMin + int32((start+i)%size)
		if a.owner[npKey(p.Protocol, np)] == "" {
			return np, true
		}
	}
	return 0, false
}

// pickLB gives the first free pool address, in pool order: operators size
// pools to their services and expect them used from the start.
func (a *serviceAllocator) pickLB(string) (string, bool) {
	for _, p := range a.net.LoadBalancerPool {
		first, last := rangeOf(p)
		for v := addrToUint(first); ; v++ {
			ip := uintToAddr(v)
			// A /31 or /32 has no network and broadcast addresses to skip.
			usable := p.Bits() >= 31 || (ip != first && ip != last)
			if usable && a.owner["lb:"+ip.String()] == "" {
				return ip.String(), true
			}
			if ip == last {
				break
			}
		}
	}
	return "", false
}

func previousNodePort(old *corev1.Service, p *corev1.ServicePort) int32 {
	if old == nil || !needsNodePorts(old) {
		return 0
	}
	for _, q := range old.Spec.Ports {
		if q.Name == p.Name && q.Protocol == p.Protocol && q.NodePort != 0 {
			return q.NodePort
		}
	}
	return 0
}

func needsNodePorts(svc *corev1.Service) bool {
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts
	}
	return false
}

func lbIP(svc *corev1.Service) string {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return ""
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			return in.IP
		}
	}
	return ""
}

func npKey(proto corev1.Protocol, port int32) string {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	return "np:" + string(proto) + "/" + strconv.Itoa(int(port))
}

// setServiceDefaults fills the fields the Kubernetes API server defaults,
// so that what get and describe show, and what agents program, is explicit.
func setServiceDefaults(svc *corev1.Service) {
	if svc.Spec.Type == "" {
		svc.Spec.Type = corev1.ServiceTypeClusterIP
	}
	if svc.Spec.SessionAffinity == "" {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		if svc.Spec.SessionAffinityConfig == nil {
			svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{}
		}
		if svc.Spec.SessionAffinityConfig.ClientIP == nil {
			svc.Spec.SessionAffinityConfig.ClientIP = &corev1.ClientIPConfig{}
		}
		if svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil {
			svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = ptrTo(int32(corev1.DefaultClientIPServiceAffinitySeconds))
		}
	}
	if (svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer) && svc.Spec.ExternalTrafficPolicy == "" {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.InternalTrafficPolicy == nil {
		svc.Spec.InternalTrafficPolicy = ptrTo(corev1.ServiceInternalTrafficPolicyCluster)
	}
	if svc.Spec.Type != corev1.ServiceTypeExternalName {
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		svc.Spec.IPFamilyPolicy = ptrTo(corev1.IPFamilyPolicySingleStack)
	}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort.IntVal == 0 && p.TargetPort.StrVal == "" {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
}

func rangeOf(p netip.Prefix) (first, last netip.Addr) {
	first = p.Masked().Addr()
	size := uint32(1) << (32 - p.Bits())
	if p.Bits() == 0 {
		size = 0 // all of IPv4: last is first-1 mod 2^32
	}
	return first, uintToAddr(addrToUint(first) + size - 1)
}

func addrToUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uintToAddr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func nameHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func poolString(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
