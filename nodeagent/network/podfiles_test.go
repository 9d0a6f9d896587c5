package network

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const nodeResolv = "# node file\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example\noptions edns0\n"

func TestWritePodFiles(t *testing.T) {
	nodeDir := t.TempDir()
	resolvPath := filepath.Join(nodeDir, "resolv.conf")
	hostsPath := filepath.Join(nodeDir, "hosts")
	if err := os.WriteFile(resolvPath, []byte(nodeResolv), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hostsPath, []byte("127.0.0.1 localhost\n192.0.2.2 node1"), 0o644); err != nil {
		t.Fatal(err)
	}
	const podHosts = "# Kubernetes-managed hosts file.\n" +
		"127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"fe00::0\tip6-mcastprefix\n" +
		"fe00::1\tip6-allnodes\n" +
		"fe00::2\tip6-allrouters\n" +
		"10.88.0.7\tweb-0\n"
	node := func(d DNSConfig) DNSConfig {
		d.NodeResolvConf, d.NodeHosts = resolvPath, hostsPath
		return d
	}
	tests := []struct {
		name       string
		ip         net.IP
		aliases    []HostAlias
		dns        DNSConfig
		wantHosts  string
		wantResolv string
		wantErr    string
	}{
		{
			name:      "ClusterFirst",
			ip:        net.ParseIP("10.88.0.7"),
			dns:       node(DNSConfig{Namespace: "shop", ClusterDNS: []string{"10.96.0.10"}}),
			wantHosts: podHosts,
			wantResolv: "nameserver 10.96.0.10\n" +
				"search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n" +
				"options ndots:5\n",
		},
		{
			name: "ClusterFirst with host aliases and dnsConfig",
			ip:   net.ParseIP("10.88.0.7"),
			aliases: []HostAlias{
				{IP: "10.1.2.3", Hostnames: []string{"foo.local", "bar.local"}},
			},
			dns: node(DNSConfig{
				Namespace: "shop", ClusterDNS: []string{"10.96.0.10"}, ClusterDomain: "k.test",
				Nameservers: []string{"1.1.1.1"}, Searches: []string{"extra.test"},
				Options: []DNSOption{{Name: "ndots", Value: "2"}, {Name: "rotate"}},
			}),
			wantHosts: podHosts + "\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n",
			wantResolv: "nameserver 10.96.0.10\nnameserver 1.1.1.1\n" +
				"search shop.svc.k.test svc.k.test k.test corp.example extra.test\n" +
				"options ndots:2 rotate\n",
		},
		{
			name:       "ClusterFirst without cluster DNS falls back to Default",
			ip:         net.ParseIP("10.88.0.7"),
			dns:        node(DNSConfig{Namespace: "shop"}),
			wantHosts:  podHosts,
			wantResolv: nodeResolv,
		},
		{
			name:       "Default",
			ip:         net.ParseIP("10.88.0.7"),
			dns:        node(DNSConfig{Policy: DNSDefault, ClusterDNS: []string{"10.96.0.10"}}),
			wantHosts:  podHosts,
			wantResolv: nodeResolv,
		},
		{
			name:       "Default with dnsConfig",
			ip:         net.ParseIP("10.88.0.7"),
			dns:        node(DNSConfig{Policy: DNSDefault, Nameservers: []string{"1.1.1.1", "8.8.8.8"}}),
			wantHosts:  podHosts,
			wantResolv: "nameserver 192.0.2.53\nnameserver 192.0.2.54\nnameserver 1.1.1.1\nsearch corp.example\noptions edns0\n",
		},
		{
			name:       "None",
			ip:         net.ParseIP("10.88.0.7"),
			dns:        node(DNSConfig{Policy: DNSNone, ClusterDNS: []string{"10.96.0.10"}, Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.test"}}),
			wantHosts:  podHosts,
			wantResolv: "nameserver 1.1.1.1\nsearch a.test\n",
		},
		{
			name:       "hostNetwork copies the node's files",
			dns:        node(DNSConfig{HostNetwork: true, ClusterDNS: []string{"10.96.0.10"}}),
			aliases:    []HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo"}}},
			wantHosts:  "127.0.0.1 localhost\n192.0.2.2 node1\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo\n",
			wantResolv: nodeResolv,
		},
		{
			name:      "ClusterFirstWithHostNet",
			dns:       node(DNSConfig{Policy: DNSClusterFirstWithHostNet, HostNetwork: true, Namespace: "ns", ClusterDNS: []string{"10.96.0.10"}}),
			wantHosts: "127.0.0.1 localhost\n192.0.2.2 node1\n",
			wantResolv: "nameserver 10.96.0.10\n" +
				"search ns.svc.cluster.local svc.cluster.local cluster.local corp.example\n" +
				"options ndots:5\n",
		},
		{name: "unknown policy", ip: net.ParseIP("10.88.0.7"), dns: node(DNSConfig{Policy: "Sometimes"}), wantErr: `unknown dnsPolicy "Sometimes"`},
		{name: "bad alias IP", ip: net.ParseIP("10.88.0.7"), aliases: []HostAlias{{IP: "x", Hostnames: []string{"a"}}}, dns: node(DNSConfig{}), wantErr: `"x" is not an IP address`},
		{name: "bad nameserver", ip: net.ParseIP("10.88.0.7"), dns: node(DNSConfig{Policy: DNSNone, Nameservers: []string{"dns"}}), wantErr: `"dns" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pod")
			hosts, resolv, hostname, err := WritePodFiles(dir, "web-0", tt.ip, tt.aliases, tt.dns)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("WritePodFiles error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct{ path, want string }{
				{hosts, tt.wantHosts}, {resolv, tt.wantResolv}, {hostname, "web-0\n"},
			} {
				got, err := os.ReadFile(f.path)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(f.want, string(got)); diff != "" {
					t.Errorf("%s mismatch (-want +got):\n%s", filepath.Base(f.path), diff)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 3 {
				t.Errorf("files in %s: %v, want exactly hosts, resolv.conf and hostname (no temporaries)", dir, entries)
			}
		})
	}
}
