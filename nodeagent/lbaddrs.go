package nodeagent

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
)

// LBAddressLabel labels the LoadBalancer addresses an agent adds to the
// loopback interface, so that it finds its own again after a restart and
// never removes anyone else's.
const LBAddressLabel = "lo:keelsonlb"

// SyncLBAddresses makes the /32 addresses labelled LBAddressLabel on the
// loopback interface equal to want. An address there makes the node answer
// for it (ARP on the node's links, local sockets); the eBPF programs
// translate what arrives to a backend.
func SyncLBAddresses(want []netip.Addr) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback interface: %w", err)
	}
	have, err := ownLBAddresses(lo)
	if err != nil {
		return err
	}
	wanted := map[netip.Addr]bool{}
	for _, a := range want {
		wanted[a] = true
	}
	var errs []error
	for _, h := range have {
		ip, _ := netip.AddrFromSlice(h.IP.To4())
		if wanted[ip] {
			delete(wanted, ip)
			continue
		}
		if err := netlink.AddrDel(lo, &h); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove %s: %w", ip, err))
		}
	}
	for _, a := range want {
		if !wanted[a] {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(32, 32)}, Label: LBAddressLabel}
		if err := netlink.AddrAdd(lo, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			errs = append(errs, fmt.Errorf("add %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveLBAddresses removes every LoadBalancer address an agent added.
func RemoveLBAddresses() error { return SyncLBAddresses(nil) }

func ownLBAddresses(lo netlink.Link) ([]netlink.Addr, error) {
	all, err := netlink.AddrList(lo, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of lo: %w", err)
	}
	var out []netlink.Addr
	for _, a := range all {
		if a.Label == LBAddressLabel {
			out = append(out, a)
		}
	}
	return out, nil
}

// heldHere is the LoadBalancer addresses this node holds: each address is
// held by one Ready node, the same on every node (rendezvous hashing over
// the Ready nodes' names), so that one node answers ARP for it; the others
// still translate traffic that reaches them. With no node known yet, the
// node holds them all.
func heldHere(addrs []netip.Addr, ready []string, self string) []netip.Addr {
	if len(ready) == 0 {
		return addrs
	}
	var out []netip.Addr
	for _, a := range addrs {
		best, bestScore := "", uint64(0)
		for _, n := range ready {
			h := fnv.New64a()
			h.Write([]byte(a.String() + "/" + n))
			if s := h.Sum64(); best == "" || s > bestScore || (s == bestScore && n < best) {
				best, bestScore = n, s
			}
		}
		if best == self {
			out = append(out, a)
		}
	}
	return out
}

// LBHolder keeps the node's LoadBalancer addresses (SyncLBAddresses) to
// those it holds among the Ready nodes, as the services and the nodes change.
type LBHolder struct {
	Node string
	// Sync is SyncLBAddresses (replaced in tests).
	Sync func([]netip.Addr) error

	mu    sync.Mutex
	addrs []netip.Addr
	ready []string
}

// SetAddrs takes the cluster's LoadBalancer addresses.
func (h *LBHolder) SetAddrs(addrs []netip.Addr) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addrs = addrs
	return h.Sync(heldHere(h.addrs, h.ready, h.Node))
}

// SetNodes takes the nodes that are Ready.
func (h *LBHolder) SetNodes(ready []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready = ready
	if h.addrs != nil {
		_ = h.Sync(heldHere(h.addrs, h.ready, h.Node))
	}
}
