package network

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Node: "n1", DataDir: "/var/lib/keelson", PodCIDR: "10.88.0.0/24"}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr []string // substrings; nil means valid
	}{
		{"valid", func(*Config) {}, nil},
		{"valid /30", func(c *Config) { c.PodCIDR = "10.88.0.0/30" }, nil},
		{"valid IPv6", func(c *Config) { c.PodCIDR = "fd00:88::/64" }, nil},
		{"valid MTU and DNS", func(c *Config) { c.MTU = 1450; c.DNSServer = "10.96.0.10" }, nil},
		{"missing node", func(c *Config) { c.Node = "" }, []string{"node name is required"}},
		{"node with slash", func(c *Config) { c.Node = "a/b" }, []string{`node name "a/b"`}},
		{"missing data dir", func(c *Config) { c.DataDir = "" }, []string{"data directory is required"}},
		{"missing CIDR", func(c *Config) { c.PodCIDR = "" }, []string{"pod CIDR is required"}},
		{"bad CIDR", func(c *Config) { c.PodCIDR = "10.88.0.0" }, []string{`pod CIDR "10.88.0.0" is not a CIDR`}},
		{"host bits set", func(c *Config) { c.PodCIDR = "10.88.0.5/24" }, []string{"did you mean 10.88.0.0/24"}},
		{"too small", func(c *Config) { c.PodCIDR = "10.88.0.0/31" }, []string{"too small"}},
		{"long bridge", func(c *Config) { c.BridgeName = "a-very-long-bridge" }, []string{"longer than 15"}},
		{"bad network name", func(c *Config) { c.NetworkName = "bad name" }, []string{`network name "bad name"`}},
		{"bad MTU", func(c *Config) { c.MTU = 100 }, []string{"MTU 100"}},
		{"bad DNS", func(c *Config) { c.DNSServer = "dns" }, []string{`DNS server "dns"`}},
		{"relative run dir", func(c *Config) { c.RunDir = "run" }, []string{"absolute path"}},
		{"missing plugins", func(c *Config) { c.PluginDirs = []string{t.TempDir()} }, []string{
			`CNI plugin "bridge" not found`, `CNI plugin "portmap" not found`, "containernetworking-plugins",
		}},
		{"several errors", func(c *Config) { c.Node = ""; c.PodCIDR = "x" }, []string{"node name is required", `pod CIDR "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mod(&cfg)
			err := cfg.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got := Config{Node: "node-a", DataDir: "/d", PodCIDR: "10.88.0.0/24"}.withDefaults()
	want := Config{
		Node: "node-a", DataDir: "/d", PodCIDR: "10.88.0.0/24",
		BridgeName:  DefaultBridgeName("node-a"),
		NetworkName: "keelson",
		PluginDirs:  []string{"/usr/lib/cni", "/opt/cni/bin"},
		RunDir:      "/run/keelson/node-a/netns",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("withDefaults() mismatch (-want +got):\n%s", diff)
	}
	if b := DefaultBridgeName("node-a"); len(b) > 15 || !strings.HasPrefix(b, "kb-") || b == DefaultBridgeName("node-b") {
		t.Errorf("DefaultBridgeName = %q, want kb-<hash> of at most 15 characters, distinct per node", b)
	}
}

func TestConfList(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want map[string]any
	}{
		{
			name: "IPv4 with MTU",
			cfg:  Config{Node: "n", DataDir: "/d", PodCIDR: "10.88.0.0/24", BridgeName: "kb0", NetworkName: "net", MTU: 1400},
			want: map[string]any{
				"cniVersion": "1.0.0",
				"name":       "net",
				"plugins": []any{
					map[string]any{
						"type": "bridge", "bridge": "kb0", "isGateway": true, "ipMasq": false, "hairpinMode": true, "mtu": 1400.0,
						"ipam": map[string]any{
							"type":    "host-local",
							"ranges":  []any{[]any{map[string]any{"subnet": "10.88.0.0/24"}}},
							"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
							"dataDir": "/d/cni/ipam",
						},
					},
					map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}, "snat": true},
				},
			},
		},
		{
			name: "IPv6 without MTU",
			cfg:  Config{Node: "n", DataDir: "/d", PodCIDR: "fd00::/64", BridgeName: "kb0", NetworkName: "net"},
			want: map[string]any{
				"cniVersion": "1.0.0",
				"name":       "net",
				"plugins": []any{
					map[string]any{
						"type": "bridge", "bridge": "kb0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
						"ipam": map[string]any{
							"type":    "host-local",
							"ranges":  []any{[]any{map[string]any{"subnet": "fd00::/64"}}},
							"routes":  []any{map[string]any{"dst": "::/0"}},
							"dataDir": "/d/cni/ipam",
						},
					},
					map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}, "snat": true},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.cfg.confList(true)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("confList() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNormalizePorts(t *testing.T) {
	got, err := normalizePorts([]PortMapping{
		{ContainerPort: 80},                                    // no host port: dropped
		{HostPort: 8080, ContainerPort: 80},                    // default protocol
		{HostPort: 53, ContainerPort: 53, Protocol: "UDP"},     // lower-cased
		{HostPort: 9090, ContainerPort: 90, HostIP: "0.0.0.0"}, // unspecified = all
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: 53, ContainerPort: 53, Protocol: "udp"},
		{HostPort: 9090, ContainerPort: 90, Protocol: "tcp"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("normalizePorts mismatch (-want +got):\n%s", diff)
	}
}

func TestPortKeyConflicts(t *testing.T) {
	tests := []struct {
		a, b portKey
		want bool
	}{
		{portKey{"tcp", "", 80}, portKey{"tcp", "", 80}, true},
		{portKey{"tcp", "", 80}, portKey{"udp", "", 80}, false},
		{portKey{"tcp", "", 80}, portKey{"tcp", "10.0.0.1", 80}, true},
		{portKey{"tcp", "10.0.0.2", 80}, portKey{"tcp", "10.0.0.1", 80}, false},
		{portKey{"tcp", "", 80}, portKey{"tcp", "", 81}, false},
	}
	for _, tt := range tests {
		if got := tt.a.conflicts(tt.b); got != tt.want {
			t.Errorf("%v conflicts %v = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestChainNames(t *testing.T) {
	// Values computed by containernetworking/plugins utils.FormatChainName and
	// the portmap plugin for network "kbtest6", container "uid-survivor".
	if got := portmapDNATChain("kbtest6", "uid-survivor"); got != "CNI-DN-e7a932a7675d59d2f925a" {
		t.Errorf("portmapDNATChain = %s", got)
	}
	if got := bridgeMasqChain("n", "c"); len(got) != 28 || !strings.HasPrefix(got, "CNI-") {
		t.Errorf("bridgeMasqChain = %s, want CNI- and 28 characters", got)
	}
}

func TestNodeMasquerade(t *testing.T) {
	tests := []struct {
		bridge, cidr string
		want         string
	}{
		{"kb0", "10.88.0.0/24", `*nat
:KEELSON-MASQ-kb0 - [0:0]
-A KEELSON-MASQ-kb0 ! -s 10.88.0.0/24 -j RETURN
-A KEELSON-MASQ-kb0 -d 10.88.0.0/24 -j RETURN
-A KEELSON-MASQ-kb0 -d 224.0.0.0/4 -j RETURN
-A KEELSON-MASQ-kb0 -j MASQUERADE
COMMIT
`},
		{"kb-0123456789ab", "fd00::/64", `*nat
:KEELSON-MASQ-kb-0123456789ab - [0:0]
-A KEELSON-MASQ-kb-0123456789ab ! -s fd00::/64 -j RETURN
-A KEELSON-MASQ-kb-0123456789ab -d fd00::/64 -j RETURN
-A KEELSON-MASQ-kb-0123456789ab -d ff00::/8 -j RETURN
-A KEELSON-MASQ-kb-0123456789ab -j MASQUERADE
COMMIT
`},
	}
	for _, tt := range tests {
		chain := nodeMasqChain(tt.bridge)
		if len(chain) > 28 {
			t.Errorf("chain %s is longer than iptables' 28 characters", chain)
		}
		if got := nodeMasqRestore(chain, tt.cidr); got != tt.want {
			t.Errorf("nodeMasqRestore(%s, %s) =\n%s\nwant\n%s", chain, tt.cidr, got, tt.want)
		}
	}
	if iptablesFor("fd00::/64") != "ip6tables" || iptablesFor("10.0.0.0/24") != "iptables" {
		t.Error("iptablesFor picks the wrong family")
	}
}
