package nodeagent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
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
