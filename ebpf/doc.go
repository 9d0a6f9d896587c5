// Package ebpf is Keelson's in-kernel service load balancer for IPv4: BPF
// programs (bpf/lb.c, compiled by bpf2go; the generated lb_bpfel.go and
// lb_bpfel.o are committed, little-endian only) and the Go code that loads,
// attaches and programs them with github.com/cilium/ebpf.
//
// # What it does
//
// Socket level, for every service: programs on the cgroup v2 root rewrite
// the destination of connect(2) (cgroup/connect4) and of unconnected UDP
// sends (cgroup/sendmsg4) from a frontend to one backend, chosen at random
// (or by ClientIP affinity, keyed by the socket's network namespace cookie:
// one pod, one client). An unconnected UDP socket keeps the backend it got,
// keyed by socket cookie. Replies and getpeername(2) show the frontend again
// (cgroup/recvmsg4, cgroup/getpeername4). A frontend with no usable backend
// fails connect and sendmsg at once with ECONNREFUSED (bpf_set_retval,
// Linux 5.18).
//
// Packet level, for External services (NodePort, LoadBalancer): TCX
// programs on the node's external interfaces DNAT packets from outside to a
// backend, remember the flow in a connection-tracking LRU map, and translate
// replies back. LocalOnly services use local backends only and keep the
// client address; with no local backend their packets are dropped. Cluster
// services keep the client address for local backends and SNAT to
// Config.NodeAddr (source ports 61000-65535) for remote ones, whose replies
// then arrive back on an external interface; SNATed packets are sent with
// bpf_fib_lookup and bpf_redirect(_neigh) rather than through the local
// stack, which would drop them for their local source address. Packets of a
// frontend without backends are dropped. IP fragments, ICMP errors and IP
// options beyond the header length are not translated.
//
// # Maps
//
//	lb4_services  hash   {addr, port, slot, proto, scope} -> master (slot 0:
//	                     service ID, count, local count, flags, affinity) or
//	                     slot entry (backend ID); scope 1 lists the local
//	                     backends of LocalOnly services
//	lb4_backends  hash   backend ID -> {addr, port, flags, service ID}
//	lb4_names     hash   service ID -> name (diagnostics only)
//	lb4_affinity  LRU    {client, service ID} -> {backend ID, last used}
//	lb4_sock_fwd  LRU    {socket cookie, frontend} -> backend (UDP)
//	lb4_rev_udp   LRU    {socket cookie, backend} -> frontend
//	lb4_rev_tcp   LRU    same for TCP (getpeername), apart so TCP churn
//	                     cannot evict the entries UDP replies need
//	lb4_ct        LRU    packet flows, both directions
//	lb4_config    array  the node address for SNAT
//
// Backend IDs belong to one service each, so a reference that outlived its
// backend (affinity, a flow, a UDP socket) is found stale by one lookup.
// Sync writes only the entries that change, batched, in an order that keeps
// every intermediate state valid: backends before the slots that name them,
// slots before the count that covers them, deletions after.
//
// # Pinning
//
// Everything lives under PinRoot/<node> (default /sys/fs/bpf/keelson/<node>;
// bpffs is mounted at /sys/fs/bpf if it is not): the maps by name, the
// programs as prog_<name>, the links as link_cgroup_<hook> and
// link_tcx_<ingress|egress>_<interface>. Close leaves them, so traffic flows
// while the agent restarts; Open reuses them, and replaces attached programs
// of another object atomically (link update). Remove and Unpin delete them.
//
// # Invariants
//
//   - Addresses that are not frontends in this node's maps pass untouched:
//     the socket programs proceed, the TCX programs return TCX_NEXT. Several
//     nodes' programs may be attached to the same cgroup root and
//     interfaces (multi-attach), each with its own maps.
//   - The Go side is a pure core (state.go, maps.go: diff, plan, encoding,
//     ID allocation; tested without root) and a thin shell (lb.go, attach.go)
//     that makes the syscalls.
package ebpf
