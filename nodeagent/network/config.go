package network

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	cniutils "github.com/containernetworking/cni/pkg/utils"
)

// ErrInvalidConfig is wrapped by every error that New returns for a bad Config.
var ErrInvalidConfig = errors.New("invalid network config")

// cniVersion is the CNI spec version of the generated configuration. Debian 12's
// containernetworking-plugins 1.1.1 supports up to 1.0.0.
const cniVersion = "1.0.0"

// podInterface is the name of the pod's interface inside its network namespace.
const podInterface = "eth0"

// requiredPlugins are the CNI plugin binaries the Manager runs.
var requiredPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

// Config describes the pod network of one node. The zero values of the optional
// fields are replaced by defaults in New (see withDefaults).
type Config struct {
	// Node is the node name. Required. It names the default bridge and run directory.
	Node string
	// DataDir is the node's data directory. Required. The network keeps its state
	// (CNI result cache, host-local IP allocations, the generated conflist) in
	// DataDir/cni, so that allocations are per node and survive restarts.
	DataDir string
	// PodCIDR is the node's pod subnet, e.g. 10.88.0.0/24. Required. Its first
	// address is the gateway (on the bridge); pods get the others.
	PodCIDR string
	// BridgeName is the Linux bridge the pods' veths are attached to.
	// Default "kb-" + a short hash of Node (at most 15 characters).
	BridgeName string
	// NetworkName is the CNI network name. Default "keelson".
	NetworkName string
	// PluginDirs are searched for the CNI plugin binaries. Default /usr/lib/cni, /opt/cni/bin.
	PluginDirs []string
	// MTU of the bridge and veths; 0 leaves the plugins' default.
	MTU int
	// DNSServer is the cluster DNS server address, if any. It is informational for
	// the pod files (WritePodFiles takes it through DNSConfig); validated here.
	DNSServer string
	// RunDir is where pod network namespaces are bind-mounted.
	// Default /run/keelson/<node>/netns.
	RunDir string
}

// DefaultBridgeName is the bridge name used for a node when Config.BridgeName is empty.
func DefaultBridgeName(node string) string {
	sum := sha256.Sum256([]byte(node))
	return "kb-" + hex.EncodeToString(sum[:])[:8]
}

// withDefaults returns cfg with the optional fields filled in.
func (cfg Config) withDefaults() Config {
	if cfg.BridgeName == "" && cfg.Node != "" {
		cfg.BridgeName = DefaultBridgeName(cfg.Node)
	}
	if cfg.NetworkName == "" {
		cfg.NetworkName = "keelson"
	}
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}
	}
	if cfg.RunDir == "" && cfg.Node != "" {
		cfg.RunDir = filepath.Join("/run/keelson", cfg.Node, "netns")
	}
	return cfg
}

// Validate checks cfg, with defaults applied, without touching the system except
// for looking up the plugin binaries. Every problem is reported, not only the first.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if cfg.Node == "" {
		add("node name is required")
	} else if strings.ContainsAny(cfg.Node, "/\x00") || cfg.Node == "." || cfg.Node == ".." {
		add("node name %q must not contain '/'", cfg.Node)
	}
	if cfg.DataDir == "" {
		add("data directory is required")
	}
	if cfg.PodCIDR == "" {
		add("pod CIDR is required")
	} else if _, err := parsePodCIDR(cfg.PodCIDR); err != nil {
		errs = append(errs, err)
	}
	if err := validateIfName(cfg.BridgeName); err != nil {
		add("bridge name %q: %w", cfg.BridgeName, err)
	}
	if err := cniutils.ValidateNetworkName(cfg.NetworkName); err != nil {
		add("network name %q: %s", cfg.NetworkName, err.Msg)
	}
	if cfg.MTU != 0 && (cfg.MTU < 576 || cfg.MTU > 65535) {
		add("MTU %d out of range 576-65535 (0 for the default)", cfg.MTU)
	}
	if cfg.DNSServer != "" && net.ParseIP(cfg.DNSServer) == nil {
		add("DNS server %q is not an IP address", cfg.DNSServer)
	}
	if cfg.RunDir != "" && !filepath.IsAbs(cfg.RunDir) {
		add("run directory %q must be an absolute path", cfg.RunDir)
	}
	for _, p := range requiredPlugins {
		if _, err := invoke.FindInPath(p, cfg.PluginDirs); err != nil {
			add("CNI plugin %q not found in %s: install the Debian package containernetworking-plugins or set the plugin directories",
				p, strings.Join(cfg.PluginDirs, ", "))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// parsePodCIDR parses a pod CIDR and requires it to be a network address with
// room for a gateway and at least one pod.
func parsePodCIDR(s string) (*net.IPNet, error) {
	ip, ipn, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR %q is not a CIDR such as 10.88.0.0/24", s)
	}
	if !ip.Equal(ipn.IP) {
		return nil, fmt.Errorf("pod CIDR %q is not a network address (did you mean %s?)", s, ipn)
	}
	ones, bits := ipn.Mask.Size()
	if bits-ones < 2 {
		return nil, fmt.Errorf("pod CIDR %q is too small: it needs room for a gateway and one pod (/30 or larger)", s)
	}
	return ipn, nil
}

// validateIfName checks a Linux interface name.
func validateIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("longer than 15 characters")
	case name == "." || name == "..":
		return errors.New("not a valid interface name")
	case strings.ContainsAny(name, "/: \t\n\x00"):
		return errors.New("must not contain '/', ':' or whitespace")
	}
	return nil
}

// stateDir is the directory of the network's own state.
func (cfg Config) stateDir() string { return filepath.Join(cfg.DataDir, "cni") }

// cacheDir is libcni's result cache.
func (cfg Config) cacheDir() string { return filepath.Join(cfg.stateDir(), "cache") }

// ipamDir is host-local's data directory; allocations are in ipamDir/<NetworkName>.
func (cfg Config) ipamDir() string { return filepath.Join(cfg.stateDir(), "ipam") }

// confList returns the CNI configuration list of the pod network: bridge with
// host-local IPAM, then portmap when withPorts is set. Pods without host
// ports are wired with the shorter list, and libcni caches the list a pod was
// wired with, so its DEL does not start portmap either.
func (cfg Config) confList(withPorts bool) ([]byte, error) {
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      cfg.BridgeName,
		"isGateway":   true,
		"ipMasq":      false, // one chain for the node instead: see nodeMasqChain
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  []any{[]any{map[string]any{"subnet": cfg.PodCIDR}}},
			"routes":  []any{map[string]any{"dst": defaultRoute(cfg.PodCIDR)}},
			"dataDir": cfg.ipamDir(),
		},
	}
	if cfg.MTU > 0 {
		bridge["mtu"] = cfg.MTU
	}
	portmap := map[string]any{
		"type":         "portmap",
		"capabilities": map[string]bool{"portMappings": true},
		"snat":         true,
	}
	plugins := []any{bridge}
	if withPorts {
		plugins = append(plugins, portmap)
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": cniVersion,
		"name":       cfg.NetworkName,
		"plugins":    plugins,
	}, "", "  ")
}

// parsedConfList is confList as libcni reads it.
func (cfg Config) parsedConfList(withPorts bool) (*libcni.NetworkConfigList, error) {
	b, err := cfg.confList(withPorts)
	if err != nil {
		return nil, fmt.Errorf("build CNI configuration: %w", err)
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse CNI configuration: %w", err)
	}
	return list, nil
}

// loopbackConf is the configuration of the loopback plugin, run as its own
// network so that lo is up in every pod.
func (cfg Config) loopbackConf() ([]byte, error) {
	return json.Marshal(map[string]any{
		"cniVersion": cniVersion,
		"name":       cfg.NetworkName + "-loopback",
		"type":       "loopback",
	})
}

func defaultRoute(cidr string) string {
	if ip, _, err := net.ParseCIDR(cidr); err == nil && ip.To4() == nil {
		return "::/0"
	}
	return "0.0.0.0/0"
}
