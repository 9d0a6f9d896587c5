package dns

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// DefaultDomain is the cluster domain when Config.Domain is empty.
const DefaultDomain = "cluster.local"

// DefaultResolvConf is where the node's resolvers are read when neither
// Config.ResolvConf nor Config.Upstreams is set.
const DefaultResolvConf = "/etc/resolv.conf"

// fallbackUpstreams are used when the resolv.conf cannot be read or names no
// nameserver: what the C library does then too (a resolver on this host).
var fallbackUpstreams = []string{"127.0.0.1:53", "[::1]:53"}

// resolvConfRecheck is how often, at most, the resolv.conf is looked at
// again to notice a change.
const resolvConfRecheck = 5 * time.Second

// ResolvConf returns the content of the resolv.conf of a pod in namespace
// whose cluster DNS server is nameserver (an address; a port, if any, is
// dropped because resolv.conf cannot carry one), for the cluster domain
// domain (DefaultDomain when empty): the search path of Kubernetes, with
// ndots:5 so that the short names of services go through it first.
func ResolvConf(namespace, nameserver, domain string) string {
	domain = strings.Trim(strings.ToLower(domain), ".")
	if domain == "" {
		domain = DefaultDomain
	}
	if ap, err := netip.ParseAddrPort(nameserver); err == nil {
		nameserver = ap.Addr().String()
	}
	var b strings.Builder
	b.WriteString("nameserver " + nameserver + "\n")
	b.WriteString("search ")
	if ns := strings.ToLower(namespace); ns != "" {
		b.WriteString(ns + ".svc." + domain + " ")
	}
	b.WriteString("svc." + domain + " " + domain + "\n")
	b.WriteString("options ndots:5\n")
	return b.String()
}

// parseResolvConf returns the nameservers of a resolv.conf as host:53
// addresses, in order. Lines that are not valid nameserver lines are ignored,
// as the C library ignores them.
func parseResolvConf(data []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		ip, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, net.JoinHostPort(ip.String(), "53"))
	}
	return out
}

// normalizeUpstream turns "ip" or "ip:port" into "ip:port".
func normalizeUpstream(s string) (string, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), true
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(ip.String(), "53"), true
	}
	return "", false
}

// upstreams is the list of servers names are forwarded to: fixed ones, or
// those of a resolv.conf, read again when the file changes. Addresses the
// server itself listens on are left out, so that a node whose resolv.conf
// names the cluster DNS does not make it forward to itself.
type upstreams struct {
	fixed []string
	path  string
	self  map[string]bool

	mu      sync.Mutex
	list    []string
	checked time.Time // last time the file was looked at
	stamp   fileStamp // of the file last read
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

// get returns the current list; now decides when to look at the file again.
func (u *upstreams) get(now time.Time) []string {
	if len(u.fixed) > 0 {
		return u.fixed
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.list != nil && now.Sub(u.checked) < resolvConfRecheck && !now.Before(u.checked) {
		return u.list
	}
	u.checked = now
	var st fileStamp
	if fi, err := os.Stat(u.path); err == nil {
		st = fileStamp{fi.ModTime(), fi.Size(), true}
	}
	if u.list != nil && st == u.stamp {
		return u.list
	}
	u.stamp = st
	var list []string
	if data, err := os.ReadFile(u.path); err == nil {
		list = parseResolvConf(data)
	}
	list = u.withoutSelf(list)
	if len(list) == 0 {
		list = u.withoutSelf(fallbackUpstreams)
	}
	u.list = list
	return list
}

func (u *upstreams) withoutSelf(list []string) []string {
	out := make([]string, 0, len(list))
	for _, a := range list {
		if !u.self[a] {
			out = append(out, a)
		}
	}
	return out
}
