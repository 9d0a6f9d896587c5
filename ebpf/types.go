package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// Error kinds, checked with errors.Is.
var (
	// ErrInvalid: a Config or Service that cannot be programmed as given.
	ErrInvalid = errors.New("invalid")
	// ErrNotSupported: the kernel or the machine lacks something the load
	// balancer needs (see CheckKernel).
	ErrNotSupported = errors.New("not supported")
)

// Protocol is an IP protocol number.
type Protocol uint8

// The protocols the load balancer translates.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Backend is one endpoint of a service.
type Backend struct {
	IP   netip.Addr
	Port uint16
	// Terminating backends get no new connections and no new affinity.
	// Flows that already use one (a TCP flow through the TCX programs, an
	// unconnected UDP socket that sent to it) keep it until it is removed.
	Terminating bool
}

// Service is one frontend: an address, port and protocol, and its backends.
type Service struct {
	Name     string     // for diagnostics, e.g. "default/web:http"; kept up to 63 bytes
	Addr     netip.Addr // ClusterIP, a node address (NodePort) or a LoadBalancer IP
	Port     uint16
	Protocol Protocol
	Backends []Backend // empty (or all terminating): connections are refused at once
	// External frontends (NodePort, LoadBalancer) are also translated by the
	// TCX programs for traffic arriving from outside.
	External bool
	// LocalOnly (externalTrafficPolicy: Local): external traffic uses only
	// local backends and keeps the client address. Connections made on the
	// node itself use every backend, as with kube-proxy.
	LocalOnly bool
	// AffinityTimeout is sessionAffinity ClientIP; 0 = none. It is kept in
	// whole seconds (rounded up).
	AffinityTimeout time.Duration
}

// Config says where a node's load balancer lives.
type Config struct {
	Node       string // required; pins under PinRoot/Node
	PinRoot    string // default /sys/fs/bpf/keelson
	CgroupPath string // default: the cgroup v2 mount found in /proc/mounts
	// ExternalInterfaces are the TCX attach points for NodePort and
	// LoadBalancer traffic. Replies of translated flows must leave, and
	// replies from remote backends must arrive, through one of them.
	ExternalInterfaces []string
	LocalCIDRs         []netip.Prefix // this node's pod CIDR(s): backends here are local
	// NodeAddr is the source address for external traffic sent to a backend
	// that is not local (Cluster policy). Unset: no SNAT, such traffic is
	// forwarded with the client's address and only works if the backend's
	// replies pass through this node.
	NodeAddr netip.Addr
	Log      *slog.Logger // nil discards
}

// DefaultPinRoot is where nodes pin their objects unless Config.PinRoot says
// otherwise.
const DefaultPinRoot = "/sys/fs/bpf/keelson"

// bpffsMount is the conventional bpffs mount point; Open mounts bpffs there
// when PinRoot is below it and nothing is mounted.
const bpffsMount = "/sys/fs/bpf"

// maxBackends is the number of slots a service can have (a __u16 count).
const maxBackends = math.MaxUint16

// maxNameLen is the longest name kept in the names map (a C string of 64).
const maxNameLen = 63

// withDefaults returns cfg with its defaults filled in, or an error naming
// what is wrong.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Node == "" {
		return cfg, fmt.Errorf("config: node name is required: %w", ErrInvalid)
	}
	if strings.ContainsAny(cfg.Node, "/\x00") || cfg.Node == "." || cfg.Node == ".." {
		return cfg, fmt.Errorf("config: node name %q cannot be a directory name: %w", cfg.Node, ErrInvalid)
	}
	if cfg.PinRoot == "" {
		cfg.PinRoot = DefaultPinRoot
	}
	cfg.PinRoot = filepath.Clean(cfg.PinRoot)
	if !filepath.IsAbs(cfg.PinRoot) {
		return cfg, fmt.Errorf("config: pin root %q is not absolute: %w", cfg.PinRoot, ErrInvalid)
	}
	if cfg.NodeAddr.IsValid() && !cfg.NodeAddr.Unmap().Is4() {
		return cfg, fmt.Errorf("config: node address %s is not IPv4: %w", cfg.NodeAddr, ErrInvalid)
	}
	cfg.NodeAddr = cfg.NodeAddr.Unmap()
	for _, p := range cfg.LocalCIDRs {
		if !p.IsValid() || !p.Addr().Unmap().Is4() {
			return cfg, fmt.Errorf("config: local CIDR %s is not IPv4: %w", p, ErrInvalid)
		}
	}
	seen := map[string]bool{}
	for _, name := range cfg.ExternalInterfaces {
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/\x00 ") {
			return cfg, fmt.Errorf("config: interface name %q: %w", name, ErrInvalid)
		}
		if seen[name] {
			return cfg, fmt.Errorf("config: interface %s listed twice: %w", name, ErrInvalid)
		}
		seen[name] = true
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// validate checks services before anything is written, so that a bad list
// changes nothing. Every error names the service.
func validate(svcs []Service) error {
	var errs []error
	seen := make(map[frontend]string, len(svcs))
	for i := range svcs {
		s := &svcs[i]
		name := s.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i)
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("service %s: %s: %w", name, fmt.Sprintf(format, args...), ErrInvalid))
		}
		if !s.Addr.IsValid() || !s.Addr.Unmap().Is4() {
			bad("address %v is not IPv4", s.Addr)
			continue
		}
		if s.Port == 0 {
			bad("port 0")
		}
		if s.Protocol != TCP && s.Protocol != UDP {
			bad("protocol %v is neither TCP nor UDP", s.Protocol)
		}
		if s.AffinityTimeout < 0 || affinitySeconds(s.AffinityTimeout) > math.MaxUint32 {
			bad("affinity timeout %v out of range", s.AffinityTimeout)
		}
		if len(s.Backends) > maxBackends {
			bad("%d backends, at most %d", len(s.Backends), maxBackends)
		}
		fe := frontendOf(s)
		if other, dup := seen[fe]; dup {
			bad("same frontend %s as service %s", fe, other)
		}
		seen[fe] = name
		bes := make(map[beAddr]bool, len(s.Backends))
		for _, b := range s.Backends {
			if !b.IP.IsValid() || !b.IP.Unmap().Is4() {
				bad("backend address %v is not IPv4", b.IP)
				continue
			}
			if b.Port == 0 {
				bad("backend %s: port 0", b.IP)
			}
			k := beAddr{b.IP.Unmap().As4(), b.Port}
			if bes[k] {
				bad("backend %s listed twice", netip.AddrPortFrom(b.IP.Unmap(), b.Port))
			}
			bes[k] = true
		}
	}
	return errors.Join(errs...)
}

// affinitySeconds rounds a timeout up to whole seconds.
func affinitySeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
