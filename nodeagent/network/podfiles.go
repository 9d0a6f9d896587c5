package network

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// HostAlias is a pod's hostAliases entry: extra /etc/hosts lines.
type HostAlias struct {
	IP        string
	Hostnames []string
}

// DNSPolicy is a pod's dnsPolicy.
type DNSPolicy string

const (
	// DNSClusterFirst uses the cluster DNS server and search path. It is the
	// default; for hostNetwork pods, and when no cluster DNS server is given, it
	// behaves as DNSDefault (as kubelet does).
	DNSClusterFirst DNSPolicy = "ClusterFirst"
	// DNSClusterFirstWithHostNet is DNSClusterFirst also for hostNetwork pods.
	DNSClusterFirstWithHostNet DNSPolicy = "ClusterFirstWithHostNet"
	// DNSDefault uses the node's resolv.conf.
	DNSDefault DNSPolicy = "Default"
	// DNSNone uses only the pod's dnsConfig.
	DNSNone DNSPolicy = "None"
)

// DNSOption is a resolv.conf option; Value is empty for flags such as "rotate".
type DNSOption struct {
	Name  string
	Value string
}

// DNSConfig holds what a pod's resolv.conf is made of: its dnsPolicy and
// dnsConfig, plus the node's cluster DNS settings.
type DNSConfig struct {
	Policy DNSPolicy // "" means ClusterFirst
	// HostNetwork is true for hostNetwork pods.
	HostNetwork bool
	// Namespace is the pod's namespace, for the search path.
	Namespace string
	// ClusterDNS are the cluster DNS server addresses (the node's DNSServer).
	ClusterDNS []string
	// ClusterDomain defaults to cluster.local.
	ClusterDomain string

	// Nameservers, Searches and Options are the pod's dnsConfig; they are
	// added to (and with DNSNone, are all of) what the policy gives.
	Nameservers []string
	Searches    []string
	Options     []DNSOption

	// NodeResolvConf and NodeHosts are the node's files; defaults
	// /etc/resolv.conf and /etc/hosts.
	NodeResolvConf string
	NodeHosts      string
}

// Limits applied as glibc and kubelet do.
const (
	maxNameservers = 3
	maxSearches    = 32
)

// WritePodFiles writes a pod's hosts, resolv.conf and hostname files into dir,
// each atomically (a temporary file renamed into place), for the agent to
// bind-mount into the pod's containers as /etc/hosts, /etc/resolv.conf and
// /etc/hostname. A nil ip means a hostNetwork pod: its hosts file starts from
// the node's. Rewriting replaces the files, so containers that already
// bind-mounted the old ones keep seeing them.
func WritePodFiles(dir string, hostname string, ip net.IP, hostAliases []HostAlias, dns DNSConfig) (hostsPath, resolvPath, hostnamePath string, err error) {
	if hostname == "" {
		return "", "", "", fmt.Errorf("write pod files in %s: empty hostname", dir)
	}
	hosts, err := hostsFile(hostname, ip, hostAliases, dns)
	if err != nil {
		return "", "", "", fmt.Errorf("write pod files for %s: %w", hostname, err)
	}
	resolv, err := resolvConf(dns)
	if err != nil {
		return "", "", "", fmt.Errorf("write pod files for %s: %w", hostname, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", "", fmt.Errorf("write pod files for %s: %w", hostname, err)
	}
	hostsPath = filepath.Join(dir, "hosts")
	resolvPath = filepath.Join(dir, "resolv.conf")
	hostnamePath = filepath.Join(dir, "hostname")
	for _, f := range []struct {
		path string
		data []byte
	}{{hostsPath, hosts}, {resolvPath, resolv}, {hostnamePath, []byte(hostname + "\n")}} {
		if err := writeFileAtomic(f.path, f.data, 0o644); err != nil {
			return "", "", "", fmt.Errorf("write pod files for %s: %w", hostname, err)
		}
	}
	return hostsPath, resolvPath, hostnamePath, nil
}

func hostsFile(hostname string, ip net.IP, aliases []HostAlias, dns DNSConfig) ([]byte, error) {
	var b bytes.Buffer
	if ip == nil || dns.HostNetwork {
		node := dns.NodeHosts
		if node == "" {
			node = "/etc/hosts"
		}
		data, err := os.ReadFile(node)
		if err != nil {
			return nil, fmt.Errorf("read node hosts file: %w", err)
		}
		b.Write(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			b.WriteByte('\n')
		}
	} else {
		b.WriteString("# Kubernetes-managed hosts file.\n" +
			"127.0.0.1\tlocalhost\n" +
			"::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"fe00::0\tip6-localnet\n" +
			"fe00::0\tip6-mcastprefix\n" +
			"fe00::1\tip6-allnodes\n" +
			"fe00::2\tip6-allrouters\n")
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	if len(aliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range aliases {
			if net.ParseIP(a.IP) == nil {
				return nil, fmt.Errorf("hostAliases: %q is not an IP address", a.IP)
			}
			if len(a.Hostnames) == 0 {
				continue
			}
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes(), nil
}

// resolvConf builds a pod's resolv.conf from its DNS policy.
func resolvConf(dns DNSConfig) ([]byte, error) {
	policy := dns.Policy
	if policy == "" {
		policy = DNSClusterFirst
	}
	switch policy {
	case DNSClusterFirst:
		if dns.HostNetwork || len(dns.ClusterDNS) == 0 {
			policy = DNSDefault
		}
	case DNSClusterFirstWithHostNet:
		if len(dns.ClusterDNS) == 0 {
			policy = DNSDefault
		} else {
			policy = DNSClusterFirst
		}
	case DNSDefault, DNSNone:
	default:
		return nil, fmt.Errorf("unknown dnsPolicy %q", dns.Policy)
	}
	for _, s := range append(slices.Clone(dns.ClusterDNS), dns.Nameservers...) {
		if net.ParseIP(s) == nil {
			return nil, fmt.Errorf("DNS nameserver %q is not an IP address", s)
		}
	}
	hasPodConfig := len(dns.Nameservers)+len(dns.Searches)+len(dns.Options) > 0

	var servers, searches []string
	var options []DNSOption
	switch policy {
	case DNSDefault:
		path := dns.NodeResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read node resolv.conf: %w", err)
		}
		if !hasPodConfig {
			return data, nil // the node's file, as is
		}
		servers, searches, options = parseResolvConf(data)
	case DNSClusterFirst:
		domain := strings.TrimSuffix(dns.ClusterDomain, ".")
		if domain == "" {
			domain = "cluster.local"
		}
		servers = slices.Clone(dns.ClusterDNS)
		if dns.Namespace != "" {
			searches = append(searches, dns.Namespace+".svc."+domain)
		}
		searches = append(searches, "svc."+domain, domain)
		path := dns.NodeResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		if data, err := os.ReadFile(path); err == nil {
			_, nodeSearch, _ := parseResolvConf(data)
			searches = append(searches, nodeSearch...)
		}
		options = []DNSOption{{Name: "ndots", Value: "5"}}
	}
	servers = dedupe(append(servers, dns.Nameservers...))
	searches = dedupe(append(searches, dns.Searches...))
	options = mergeOptions(options, dns.Options)
	if len(servers) > maxNameservers {
		servers = servers[:maxNameservers]
	}
	if len(searches) > maxSearches {
		searches = searches[:maxSearches]
	}

	var b bytes.Buffer
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(searches, " "))
	}
	if len(options) > 0 {
		parts := make([]string, 0, len(options))
		for _, o := range options {
			if o.Value == "" {
				parts = append(parts, o.Name)
			} else {
				parts = append(parts, o.Name+":"+o.Value)
			}
		}
		fmt.Fprintf(&b, "options %s\n", strings.Join(parts, " "))
	}
	return b.Bytes(), nil
}

// parseResolvConf reads nameserver, search/domain and options lines.
func parseResolvConf(data []byte) (servers, searches []string, options []DNSOption) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search", "domain":
			searches = f[1:] // the last one wins, as in glibc
		case "options":
			for _, o := range f[1:] {
				name, value, _ := strings.Cut(o, ":")
				options = mergeOptions(options, []DNSOption{{Name: name, Value: value}})
			}
		}
	}
	return servers, searches, options
}

func dedupe(ss []string) []string {
	var out []string
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// mergeOptions adds extra to base; an option of the same name is replaced.
func mergeOptions(base, extra []DNSOption) []DNSOption {
	out := slices.Clone(base)
	for _, o := range extra {
		if i := slices.IndexFunc(out, func(x DNSOption) bool { return x.Name == o.Name }); i >= 0 {
			out[i] = o
		} else {
			out = append(out, o)
		}
	}
	return out
}

// writeFileAtomic writes data to a temporary file in path's directory and
// renames it onto path, so that readers see the old or the new file, never a
// partial one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(perm)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return werr
	}
	return nil
}
