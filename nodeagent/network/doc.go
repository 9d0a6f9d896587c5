// Package network gives each pod on a node its network: a network namespace
// (lo brought up as it is made) wired to the node's pod network by the CNI
// plugins of Debian's containernetworking-plugins (bridge + host-local IPAM,
// and portmap for pods with a hostPort), run through libcni. What pods send
// beyond the pod network is masqueraded by one iptables chain for the node
// (KEELSON-MASQ-<bridge>), not by the bridge plugin's chain per pod;
// RemoveNode removes it with the bridge. It also writes the pods'
// /etc/hosts, /etc/resolv.conf and /etc/hostname (WritePodFiles).
//
// Invariants:
//
//   - A pod's sandbox is keyed by its UID: the namespace is bind-mounted at
//     RunDir/<uid> and the UID is the CNI container ID. The namespace is created
//     on a dedicated locked OS thread that is returned to the runtime only after
//     it is moved back to the host namespace.
//   - All persistent state is under DataDir/cni: libcni's result cache (the
//     configuration, arguments and result of every ADD) and host-local's IP
//     allocations. Both survive an agent restart, so a new Manager adopts the
//     pods (Sandboxes, then Setup returns the same sandbox after a CNI CHECK) and
//     can tear down pods whose namespace is gone (after a reboot) with the cached
//     configuration, releasing their IPs.
//   - Setup either returns a wired sandbox or leaves nothing behind (no
//     namespace, no veth, no IP, no iptables rules). Teardown is idempotent.
//   - Host ports are checked (a bind on the node) and held by the Manager while
//     the pod has them, because portmap's iptables DNAT would not fail on a taken
//     port.
//   - The package runs no goroutines of its own past a call and keeps no global
//     state; the Manager is safe for concurrent use, serializing calls per pod.
//     It runs at most eight CNI plugins per CPU at once (pluginRuns).
package network
