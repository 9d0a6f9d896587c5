package network

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
)

// PortMapping is a pod hostPort: traffic to HostIP:HostPort on the node is
// forwarded (by the portmap plugin) to the pod's ContainerPort.
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	// Protocol is TCP (the default), UDP or SCTP, in any case.
	Protocol string
	// HostIP restricts the mapping to one node address; empty means all.
	HostIP string
}

// portKey identifies a reserved host port.
type portKey struct {
	proto  string // lower case
	hostIP string // "" for all addresses
	port   int32
}

func (k portKey) String() string {
	host := k.hostIP
	if host == "" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, strconv.Itoa(int(k.port))) + "/" + k.proto
}

// conflicts reports whether two reservations overlap: same protocol and port, and
// the same address or either on all addresses.
func (k portKey) conflicts(o portKey) bool {
	return k.proto == o.proto && k.port == o.port &&
		(k.hostIP == "" || o.hostIP == "" || k.hostIP == o.hostIP)
}

// normalizePorts validates the mappings that have a host port and returns them
// with lower-case protocols, as the portmap plugin expects.
func normalizePorts(ports []PortMapping) ([]PortMapping, error) {
	var out []PortMapping
	for _, p := range ports {
		if p.HostPort == 0 {
			continue
		}
		p.Protocol = strings.ToLower(p.Protocol)
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		switch {
		case p.Protocol != "tcp" && p.Protocol != "udp" && p.Protocol != "sctp":
			return nil, fmt.Errorf("hostPort %d: unknown protocol %q (want TCP, UDP or SCTP)", p.HostPort, p.Protocol)
		case p.HostPort < 1 || p.HostPort > 65535:
			return nil, fmt.Errorf("hostPort %d out of range 1-65535", p.HostPort)
		case p.ContainerPort < 1 || p.ContainerPort > 65535:
			return nil, fmt.Errorf("hostPort %d: containerPort %d out of range 1-65535", p.HostPort, p.ContainerPort)
		case p.HostIP != "" && net.ParseIP(p.HostIP) == nil:
			return nil, fmt.Errorf("hostPort %d: hostIP %q is not an IP address", p.HostPort, p.HostIP)
		}
		if ip := net.ParseIP(p.HostIP); ip != nil && ip.IsUnspecified() {
			p.HostIP = ""
		}
		out = append(out, p)
	}
	return out, nil
}

func keyOf(p PortMapping) portKey {
	return portKey{proto: p.Protocol, hostIP: p.HostIP, port: p.HostPort}
}

// holdPort binds the host port so that no other process can take it while the
// pod has it. portmap forwards with iptables DNAT before the socket would see
// the traffic, so holding the socket does not steal the pod's connections.
// SCTP ports are not held (the check is left to the kernel's SCTP stack).
func holdPort(k portKey) (io.Closer, error) {
	addr := net.JoinHostPort(k.hostIP, strconv.Itoa(int(k.port)))
	var (
		c   io.Closer
		err error
	)
	switch k.proto {
	case "tcp":
		c, err = net.Listen("tcp", addr)
	case "udp":
		c, err = net.ListenPacket("udp", addr)
	default:
		return io.NopCloser(nil), nil
	}
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: host port %s is already used by another process on the node", ErrPortInUse, k)
		}
		return nil, fmt.Errorf("reserve host port %s: %w", k, err)
	}
	return c, nil
}

// closeAll closes every closer, ignoring errors (they are reservation sockets).
func closeAll(cs []io.Closer) {
	for _, c := range cs {
		_ = c.Close()
	}
}
