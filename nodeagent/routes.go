package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/apiserver/client"
)

// RouteProtocol marks the routes an agent adds to other nodes' pod CIDRs
// (the rtnetlink protocol field, as routing daemons mark theirs), so that
// an agent finds its own routes again after a restart and never touches
// anyone else's.
const RouteProtocol = netlink.RouteProtocol(75)

// PodRoute sends a node's pod CIDR to that node's address: the host-gw
// model (as flannel's host-gw backend), which needs the nodes to share a
// link. A pod on one node then reaches a pod on another by its address.
type PodRoute struct {
	CIDR netip.Prefix
	Via  netip.Addr
	Node string
}

// podRoutes is the routes this node wants: one per other node that has a
// pod CIDR and an internal address, sorted by CIDR. Nodes without either
// (simulated ones, or nodes still registering) are left out.
func podRoutes(nodes []corev1.Node, self string) []PodRoute {
	var out []PodRoute
	for _, n := range nodes {
		if n.Name == self || n.Spec.PodCIDR == "" {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil {
			continue
		}
		var via netip.Addr
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() && !ip.IsLoopback() {
					via = ip
					break
				}
			}
		}
		if !via.IsValid() {
			continue
		}
		out = append(out, PodRoute{CIDR: cidr.Masked(), Via: via, Node: n.Name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CIDR.String() < out[j].CIDR.String() })
	return out
}

// Routes keeps the node's routes to the other nodes' pod CIDRs equal to
// what the controller's node list says. Routes stay when the agent stops
// (pods keep talking); RemoveRoutes takes them away.
type Routes struct {
	Client *client.Client
	Node   string
	Log    *slog.Logger
	// OnNodes, when set, gets the names of the Ready nodes on each change.
	OnNodes func(ready []string)
}

// Run follows the node list until ctx ends.
func (r *Routes) Run(ctx context.Context) {
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	warned := map[string]string{}
	followQuery(ctx, log, "nodes", func(ctx context.Context, idx uint64) (uint64, error) {
		list, err := r.Client.Nodes(ctx, client.Query{Index: idx, Wait: 5 * time.Minute})
		if err != nil {
			return idx, err
		}
		if r.OnNodes != nil {
			var ready []string
			for _, n := range list.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready = append(ready, n.Name)
					}
				}
			}
			r.OnNodes(ready)
		}
		for _, f := range SyncRoutes(podRoutes(list.Items, r.Node)) {
			if warned[f.Route.Node] != f.Err.Error() {
				warned[f.Route.Node] = f.Err.Error()
				log.Warn("pods of another node are unreachable from here", "node", f.Route.Node, "cidr", f.Route.CIDR, "via", f.Route.Via, "err", f.Err)
			}
		}
		return list.Index, nil
	})
}

// RouteFailure is a route that could not be set.
type RouteFailure struct {
	Route PodRoute
	Err   error
}

// SyncRoutes makes the routes marked RouteProtocol in the main table equal
// to want: it replaces what differs and removes the rest. A route whose
// gateway is not on a link of this host cannot be set (the nodes must
// share a network); it is reported and the others are still set.
func SyncRoutes(want []PodRoute) []RouteFailure {
	have, err := ownRoutes()
	if err != nil {
		return []RouteFailure{{Err: err}}
	}
	// Nodes on this very host (several agents in one network namespace)
	// reach each other's pods through their own bridges: no route.
	local := map[netip.Addr]bool{}
	if addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4); err == nil {
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
				local[ip] = true
			}
		}
	}
	wanted := map[string]PodRoute{}
	kept := want[:0:0]
	for _, w := range want {
		if !local[w.Via] {
			wanted[w.CIDR.String()] = w
			kept = append(kept, w)
		}
	}
	want = kept
	for _, h := range have {
		dst := h.Dst.String()
		w, ok := wanted[dst]
		if ok && h.Gw.Equal(net.IP(w.Via.AsSlice())) {
			delete(wanted, dst) // already right
			continue
		}
		if !ok {
			_ = netlink.RouteDel(&h)
		}
	}
	var failed []RouteFailure
	for _, w := range want {
		if _, todo := wanted[w.CIDR.String()]; !todo {
			continue
		}
		rt := &netlink.Route{
			Dst:      &net.IPNet{IP: net.IP(w.CIDR.Addr().AsSlice()), Mask: net.CIDRMask(w.CIDR.Bits(), 32)},
			Gw:       net.IP(w.Via.AsSlice()),
			Protocol: RouteProtocol,
		}
		if err := netlink.RouteReplace(rt); err != nil {
			if errors.Is(err, syscall.ENETUNREACH) {
				err = fmt.Errorf("%s is not on a network this node is attached to (nodes must share a link for pod routes): %w", w.Via, err)
			}
			failed = append(failed, RouteFailure{Route: w, Err: err})
		}
	}
	return failed
}

// RemoveRoutes removes every route an agent added on this host.
func RemoveRoutes() error {
	have, err := ownRoutes()
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range have {
		if err := netlink.RouteDel(&h); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", h.Dst, err))
		}
	}
	return errors.Join(errs...)
}

func ownRoutes() ([]netlink.Route, error) {
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol, Table: syscall.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return rs, nil
}
