// Package dns is the cluster DNS server a node agent runs for the pods on
// its node: it answers names of the cluster domain (cluster.local by default)
// from the agent's view of services, endpoints and pods, as the Kubernetes
// DNS specification and CoreDNS's kubernetes plugin do, and forwards every
// other name to the node's own resolvers.
//
// Cluster names (TTL 5 s, authoritative):
//
//   - svc.ns.svc.<zone>: A/AAAA of the ClusterIP; for a headless service
//     (no ClusterIP) those of its published endpoints (ready ones, and the
//     not-ready ones too when PublishNotReadyAddresses); for an ExternalName
//     service a CNAME, followed in the cluster or through the upstreams.
//   - ep.svc.ns.svc.<zone>: A/AAAA of the published endpoints whose
//     hostname is ep; an endpoint without a hostname is named by its address
//     with dashes (10-1-2-3).
//   - _port._proto.svc.ns.svc.<zone>: SRV of a named port: the service name
//     and service port for a ClusterIP service, one record per published
//     endpoint (its name and target port) for a headless one; a SRV query for
//     svc.ns.svc.<zone> itself lists every port. Targets' addresses go in the
//     additional section.
//   - 10-1-2-3.ns.pod.<zone>: A/AAAA of a pod in the view (or of any well-formed
//     address with Config.InsecurePods, CoreDNS's "pods insecure").
//   - PTR: the name of a ClusterIP's service, else of the endpoint, else of
//     the pod with that address (one name, the first in order when several
//     have it). A PTR query for another address is forwarded.
//   - dns-version.<zone> TXT "1.1.0"; SOA and NS at the apex.
//   - Any other name in the zone: NXDOMAIN with the SOA in the authority
//     section; a name that exists (or has names below it) but has no record
//     of the asked type: NOERROR with no answer.
//
// Invariants:
//
//   - The view is immutable once built (its PTR index is made once, on the
//     first PTR query). Update builds a new one from the whole list of
//     services and pods and swaps it in atomically, so a query sees one view,
//     never a mix. Lookup (view.lookup) is a pure function of the view and the
//     question: no I/O, no clock, no goroutines. The view stores services, not
//     names: query names are parsed as CoreDNS parses them.
//   - The Server is the thin shell around it: UDP and TCP listeners on every
//     configured address, bound with IP_FREEBIND so that Start works before
//     the agent's bridge has its address; forwarding to the upstreams (UDP,
//     retried over TCP when truncated, failing over in turn) through a small
//     cache that honors the answers' TTLs (negative answers by their SOA).
//   - Every goroutine belongs to the Server: Close stops the listeners,
//     cancels the forwards in flight and waits until every goroutine has
//     returned.
//   - Answers fit the client's transport: UDP answers are truncated (TC set)
//     to 512 bytes or the client's EDNS(0) size, so clients retry over TCP.
//   - The package keeps no mutable global state and has no init side effects.
package dns
