// Package ebpf is Keelson's in-kernel service load balancer for IPv4, and
// the socket steering of the node's Ingress proxy: BPF programs (bpf/lb.c,
// bpf/steer.c, compiled by bpf2go; the generated *_bpfel.go and *_bpfel.o
// are committed, little-endian only) and the Go code that loads, attaches
// and programs them with github.com/cilium/ebpf.
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
// frontend without backends are dropped. IP fragments and ICMP errors are
// not translated.
//
// It needs Linux 6.6 (TCX) with cgroup v2 and bpffs; CheckKernel says what
// is missing. BTF is not needed (no CO-RE).
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
// Sync (the whole list) and Update/Delete (some services) write only the
// entries that change, batched, in an order that keeps every intermediate
// state valid: backends before the slots that name them, slots before the
// count that covers them, deletions after.
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
// # Capacity and limits
//
// lb4_services and lb4_backends hold 262,144 entries each (a service takes
// one entry plus one per active backend, twice for the local ones of
// LocalOnly services; 10,000 services of 3 backends take 40,000); a Sync
// beyond that fails and changes are retried from the maps on the next one.
// The LRU maps (affinity 65,536, UDP sockets 65,536, flows 131,072) forget
// the least recently used entry when full: an unconnected UDP socket may
// then move to another backend, a translated flow may break.
//
// Not handled: IPv6; NodePorts on 127.0.0.1 or on "any node address" (a
// Service names each address); ICMP errors about translated flows (path MTU
// discovery through NodePort SNAT); TTL decrement on redirected SNAT
// packets.
//
// # Socket steering for the Ingress proxy
//
// Steering (steer.go, bpf/steer.c) lets the proxy listen once, on any
// address (127.0.0.1:0 will do), and serve ports 80 and 443 of every node
// and LoadBalancer address, including an address added while it runs. An
// sk_lookup program attached to the node's network namespace
// (SteerConfig.NetNS, by default the caller's) runs when the kernel looks
// for the listener of a new TCP connection: if the destination address is
// in steer4_addrs (SetAddrs: exactly the node's and its LoadBalancer
// addresses) and steer4_socks holds a socket for the destination port
// (SetListener), the connection goes to that socket. It is IPv4 only (IPv6
// lookups pass untouched; a dual-stack listener takes the steered IPv4
// connections) and TCP only.
//
//	steer4_addrs          hash     IPv4 address (network order) -> 1; 4,096
//	steer4_socks          sockhash port (host order) -> listening socket; 64
//	link_netns_sk_lookup  the link that attaches the program
//
// The program never drops: a connection it does not steer (another address
// or port, UDP, IPv6) goes on to the kernel's normal lookup, and so does one
// to a port whose listener has closed (the kernel removes a socket from
// steer4_socks when it closes), which is then refused if nothing else
// listens: a dead proxy's port is refused, never blackholed. A listener
// must be a plain TCP socket in the attached namespace; Go listens with
// Multipath TCP by default, which the kernel cannot steer to, so the proxy
// listens with ListenSteerable. The steering runs after the load balancer:
// a Service frontend on the same address and port is translated first (by
// connect4 on the node, by TCX from outside) and never reaches the proxy.
//
// The pins live beside the load balancer's, in PinRoot/<node>. Close leaves
// them, so connections are steered while the agent restarts for as long as
// the old listener is open; OpenSteering reuses the maps (addresses and
// sockets), re-attaches only if the pinned link is missing or attached to
// another (or a vanished) namespace, and replaces a changed program through
// the link; SetListener then puts the new listener in place of the old
// one. Remove and UnpinSteering delete the steering pins and leave the load
// balancer's; Unpin of the load balancer deletes the node's directory,
// steering included. Several nodes in separate namespaces of one machine
// each attach their own program with their own pins; programs of several
// nodes in one namespace all run, and the first to assign a socket wins.
// It needs Linux 5.9 (sk_lookup); CheckSteering says what is missing.
//
// # Invariants
//
//   - Addresses that are not frontends in this node's maps pass untouched:
//     the socket programs proceed, the TCX programs return TCX_NEXT. Several
//     nodes' programs may be attached to the same cgroup root and
//     interfaces (multi-attach), each with its own maps. Likewise the
//     steering program passes every connection it does not steer.
//   - The Go side is a pure core (state.go, maps.go: diff, plan, encoding,
//     ID allocation; tested without root) and a thin shell (lb.go, attach.go)
//     that makes the syscalls.
package ebpf
