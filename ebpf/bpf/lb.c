// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
//
// Keelson's in-kernel service load balancer (IPv4).
//
// Socket level (cgroup/connect4, sendmsg4, recvmsg4, getpeername4 on the
// cgroup v2 root): a connect or an unconnected send to a service frontend is
// rewritten to one of its backends before any packet exists, so the data path
// of a service connection is the data path of a direct one.
//
// Packet level (TCX ingress/egress on the node's external interfaces): packets
// from outside to an external frontend (NodePort, LoadBalancer IP) are DNATed
// to a backend, SNATed to the node address when the backend is not local and
// the policy allows it, and their replies are translated back. A small
// connection-tracking LRU map remembers each flow.
//
// Invariant: anything that is not a frontend of this node's maps passes
// untouched (SYS_PROCEED, TCX_NEXT), because several nodes' programs may be
// attached to the same cgroup root and interfaces at once.
//
// The layouts below are mirrored in Go (maps.go); a test checks them against
// the BTF of the compiled object.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define ECONNREFUSED 111
#define NSEC_PER_SEC 1000000000ULL

#define SYS_REJECT 0
#define SYS_PROCEED 1

// TCX verdicts (linux/bpf.h of kernels >= 6.6).
#define TCX_NEXT -1
#define TCX_PASS 0
#define TCX_DROP 2

// Service flags (lb4_service.flags, master entry).
#define SVC_F_EXTERNAL 1
#define SVC_F_LOCAL_ONLY 2

// Backend flags.
#define BE_F_LOCAL 1
#define BE_F_TERMINATING 2

// Service key scopes: all active backends, or the local ones only (used by
// external traffic of LocalOnly services).
#define SCOPE_ALL 0
#define SCOPE_LOCAL 1

// Connection tracking.
#define CT_FWD 0
#define CT_REV 1
#define CT_F_SNAT 1
#define CT_F_CLOSING 2

// SNAT source ports: apart from the kernel's default ephemeral range
// (32768-60999) so that they never collide with the node's own connections.
#define SNAT_PORT_MIN 61000
#define SNAT_PORT_COUNT 4536
#define SNAT_TRIES 8
// A SNAT port whose flow has been idle this long (seconds) may be reused.
#define CT_IDLE_CLOSING 10
#define CT_IDLE_UDP 60
#define CT_IDLE_TCP 21600

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_RST 0x04

// lb4_services: a master entry (slot 0, scope 0) per frontend and one entry
// per backend slot (1..count in scope 0, 1..local_count in scope 1).
struct lb4_key {
	__be32 addr;
	__be16 port;
	__u16 slot;
	__u8 proto;
	__u8 scope;
	__u16 pad;
};

struct lb4_service {
	__u32 backend_id;       // slot entries: the backend in this slot
	__u32 svc_id;           // the service's ID (owner of its backends)
	__u32 affinity_timeout; // master: ClientIP affinity in seconds, 0 = none
	__u16 count;            // master: active backends (scope 0 slots)
	__u16 local_count;      // master: local active backends (scope 1 slots)
	__u8 flags;             // master: SVC_F_*
	__u8 pad[3];
};

// lb4_backends: backend ID -> address. Every backend belongs to one service
// (svc_id), so a stale ID (affinity, CT, UDP socket) is detected by a lookup.
struct lb4_backend {
	__be32 addr;
	__be16 port;
	__u8 flags; // BE_F_*
	__u8 pad;
	__u32 svc_id;
};

struct lb4_affinity_key {
	__u64 client; // netns cookie (socket level) or client IPv4 (packet level)
	__u32 svc_id;
	__u8 netns; // 1: client is a netns cookie
	__u8 pad[3];
};

struct lb4_affinity_val {
	__u32 backend_id;
	__u32 last_used; // seconds, monotonic clock
};

// lb4_sock_fwd: (socket, frontend) -> backend, so that an unconnected UDP
// socket keeps its backend. lb4_sock_rev_*: (socket, backend) -> frontend,
// for recvmsg4 and getpeername4.
struct lb4_sock_key {
	__u64 cookie;
	__be32 addr;
	__be16 port;
	__u16 pad;
};

struct lb4_sock_val {
	__be32 addr;
	__be16 port;
	__u16 pad;
	__u32 id; // sock_fwd: backend ID; sock_rev: service ID
};

// lb4_ct: packet-level flows. CT_FWD entries are keyed by the packet as it
// arrives from the client, CT_REV entries by the reply as the backend sends it.
struct lb4_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;
	__u16 pad;
};

struct lb4_ct_val {
	__be32 nat_addr;  // FWD: backend (new destination); REV: frontend (new source)
	__be32 snat_addr; // FWD: SNAT source, 0 = none; REV+SNAT: client (new destination)
	__be16 nat_port;
	__be16 snat_port;
	__u32 backend_id;
	__u32 svc_id;
	__u32 last_seen; // seconds, monotonic clock
	__u8 flags;      // CT_F_*
	__u8 pad[3];
};

struct lb4_config {
	__be32 node_addr; // SNAT source for remote backends; 0 = no SNAT
	__u32 flags;
};

struct lb4_name {
	char name[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb4_backend);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_backends SEC(".maps");

// Only user space reads and writes the names (diagnostics).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb4_name);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_affinity_key);
	__type(value, struct lb4_affinity_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_sock_key);
	__type(value, struct lb4_sock_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_sock_fwd SEC(".maps");

// UDP and TCP reverse entries are apart so that a burst of short TCP
// connections cannot evict the entries that UDP replies need.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_sock_key);
	__type(value, struct lb4_sock_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_rev_udp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_sock_key);
	__type(value, struct lb4_sock_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_rev_tcp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_ct_key);
	__type(value, struct lb4_ct_val);
	__uint(max_entries, 131072);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb4_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_config SEC(".maps");

static __always_inline __u32 now_sec(void)
{
	return bpf_ktime_get_ns() / NSEC_PER_SEC;
}

// valid_backend returns the backend with this ID if it still belongs to svc.
static __always_inline struct lb4_backend *valid_backend(__u32 id, __u32 svc_id)
{
	struct lb4_backend *be;

	if (!id)
		return NULL;
	be = bpf_map_lookup_elem(&lb4_backends, &id);
	if (!be || be->svc_id != svc_id)
		return NULL;
	return be;
}

// pick_backend chooses a backend of svc for a new connection: the client's
// affine backend if it is still usable, else a random slot of the scope.
// It copies the backend to *out and returns its ID, or 0 when there is none.
static __always_inline __u32 pick_backend(const struct lb4_key *master, const struct lb4_service *svc,
					  __u8 scope, __u64 client, __u8 netns, struct lb4_backend *out)
{
	struct lb4_affinity_key akey = {};
	struct lb4_affinity_val aval = {};
	struct lb4_affinity_val *av;
	struct lb4_service *slot;
	struct lb4_backend *be = NULL;
	struct lb4_key key;
	__u32 timeout = svc->affinity_timeout;
	__u32 svc_id = svc->svc_id;
	__u16 count = scope == SCOPE_LOCAL ? svc->local_count : svc->count;
	__u32 now = 0;
	__u32 id = 0;

	if (timeout) {
		now = now_sec();
		akey.client = client;
		akey.svc_id = svc_id;
		akey.netns = netns;
		av = bpf_map_lookup_elem(&lb4_affinity, &akey);
		if (av && now - av->last_used <= timeout) {
			id = av->backend_id;
			be = valid_backend(id, svc_id);
			if (be && ((be->flags & BE_F_TERMINATING) ||
				   (scope == SCOPE_LOCAL && !(be->flags & BE_F_LOCAL))))
				be = NULL;
		}
	}
	if (!be) {
		if (!count)
			return 0;
		key = *master;
		key.scope = scope;
		key.slot = (bpf_get_prandom_u32() % count) + 1;
		slot = bpf_map_lookup_elem(&lb4_services, &key);
		if (!slot)
			return 0;
		id = slot->backend_id;
		be = valid_backend(id, svc_id);
		if (!be)
			return 0;
	}
	*out = *be;
	if (timeout) {
		aval.backend_id = id;
		aval.last_used = now;
		bpf_map_update_elem(&lb4_affinity, &akey, &aval, BPF_ANY);
	}
	return id;
}

static __always_inline int sock_refuse(void)
{
	// Kernels >= 5.18: the syscall fails with this error instead of EPERM.
	bpf_set_retval(-ECONNREFUSED);
	return SYS_REJECT;
}

// sock4_fwd translates a connect or an unconnected UDP send to a frontend.
static __always_inline int sock4_fwd(struct bpf_sock_addr *ctx, int sendmsg)
{
	struct lb4_key key = {};
	struct lb4_service *svc;
	struct lb4_backend be = {};
	struct lb4_backend *cur;
	struct lb4_sock_key skey = {};
	struct lb4_sock_val sval = {};
	struct lb4_sock_val *fwd;
	__u32 id = 0;
	__u8 proto = ctx->protocol;
	__u64 cookie;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return SYS_PROCEED;
	key.addr = ctx->user_ip4;
	key.port = (__be16)ctx->user_port;
	key.proto = proto;
	svc = bpf_map_lookup_elem(&lb4_services, &key);
	if (!svc)
		return SYS_PROCEED;

	cookie = bpf_get_socket_cookie(ctx);
	skey.cookie = cookie;
	skey.addr = key.addr;
	skey.port = key.port;
	if (sendmsg) {
		// The same UDP socket keeps its backend while it is valid
		// (terminating backends included: the "connection" exists).
		fwd = bpf_map_lookup_elem(&lb4_sock_fwd, &skey);
		if (fwd) {
			cur = valid_backend(fwd->id, svc->svc_id);
			if (cur && cur->addr == fwd->addr && cur->port == fwd->port) {
				id = fwd->id;
				be = *cur;
			}
		}
	}
	if (!id) {
		id = pick_backend(&key, svc, SCOPE_ALL, bpf_get_netns_cookie(ctx), 1, &be);
		if (!id)
			return sock_refuse();
		if (sendmsg) {
			sval.addr = be.addr;
			sval.port = be.port;
			sval.id = id;
			bpf_map_update_elem(&lb4_sock_fwd, &skey, &sval, BPF_ANY);
		}
	}

	// Remember the frontend for replies (recvmsg4) and getpeername4.
	skey.addr = be.addr;
	skey.port = be.port;
	sval.addr = key.addr;
	sval.port = key.port;
	sval.id = svc->svc_id;
	if (proto == IPPROTO_UDP) {
		fwd = bpf_map_lookup_elem(&lb4_rev_udp, &skey);
		if (!fwd || fwd->addr != sval.addr || fwd->port != sval.port || fwd->id != sval.id)
			bpf_map_update_elem(&lb4_rev_udp, &skey, &sval, BPF_ANY);
	} else {
		bpf_map_update_elem(&lb4_rev_tcp, &skey, &sval, BPF_ANY);
	}

	ctx->user_ip4 = be.addr;
	ctx->user_port = (__u32)be.port;
	return SYS_PROCEED;
}

// sock4_rev shows the frontend instead of the backend to the application.
static __always_inline void sock4_rev(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct lb4_sock_key skey = {};
	struct lb4_sock_val *rev;
	struct lb4_key key = {};
	struct lb4_service *svc;

	skey.cookie = bpf_get_socket_cookie(ctx);
	skey.addr = ctx->user_ip4;
	skey.port = (__be16)ctx->user_port;
	if (proto == IPPROTO_UDP)
		rev = bpf_map_lookup_elem(&lb4_rev_udp, &skey);
	else if (proto == IPPROTO_TCP)
		rev = bpf_map_lookup_elem(&lb4_rev_tcp, &skey);
	else
		return;
	if (!rev)
		return;
	// Only while the service still exists: a removed service's socket
	// sees its real peer.
	key.addr = rev->addr;
	key.port = rev->port;
	key.proto = proto;
	svc = bpf_map_lookup_elem(&lb4_services, &key);
	if (!svc || svc->svc_id != rev->id)
		return;
	ctx->user_ip4 = rev->addr;
	ctx->user_port = (__u32)rev->port;
}

SEC("cgroup/connect4")
int lb4_connect4(struct bpf_sock_addr *ctx)
{
	return sock4_fwd(ctx, 0);
}

SEC("cgroup/sendmsg4")
int lb4_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_fwd(ctx, 1);
}

SEC("cgroup/recvmsg4")
int lb4_recvmsg4(struct bpf_sock_addr *ctx)
{
	sock4_rev(ctx, IPPROTO_UDP);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int lb4_getpeername4(struct bpf_sock_addr *ctx)
{
	sock4_rev(ctx, ctx->protocol);
	return SYS_PROCEED;
}

// Packet level.

struct pkt {
	__u32 l4off;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u16 tot_len;
	__u8 proto;
	__u8 tcp_flags;
};

static __always_inline int parse4(struct __sk_buff *skb, struct pkt *p)
{
	struct iphdr ip;
	__u8 l4[14];

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.version != 4 || ip.ihl < 5)
		return -1;
	// Fragments are not translated.
	if (ip.frag_off & bpf_htons(0x3fff))
		return -1;
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return -1;
	p->l4off = ETH_HLEN + ip.ihl * 4;
	p->proto = ip.protocol;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	p->tot_len = bpf_ntohs(ip.tot_len);
	p->tcp_flags = 0;
	if (ip.protocol == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, p->l4off, l4, 14) < 0)
			return -1;
		p->tcp_flags = l4[13];
	} else if (bpf_skb_load_bytes(skb, p->l4off, l4, 4) < 0) {
		return -1;
	}
	__builtin_memcpy(&p->sport, &l4[0], 2);
	__builtin_memcpy(&p->dport, &l4[2], 2);
	return 0;
}

static __always_inline __u32 l4_csum_off(const struct pkt *p)
{
	return p->l4off + (p->proto == IPPROTO_TCP ? 16 : 6);
}

static __always_inline __u64 l4_csum_flags(const struct pkt *p)
{
	// A UDP checksum of 0 means "none" and stays 0.
	return p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

static __always_inline int set_addr(struct __sk_buff *skb, const struct pkt *p, __u32 off, __be32 from, __be32 to)
{
	if (from == to)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(p), from, to, BPF_F_PSEUDO_HDR | l4_csum_flags(p) | 4) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, from, to, 4) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, off, &to, 4, 0);
}

static __always_inline int set_port(struct __sk_buff *skb, const struct pkt *p, __u32 off, __be16 from, __be16 to)
{
	if (from == to)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(p), from, to, l4_csum_flags(p) | 2) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, off, &to, 2, 0);
}

// rewrite sets the packet's source and destination.
static __always_inline int rewrite(struct __sk_buff *skb, const struct pkt *p, __be32 saddr, __be16 sport,
				   __be32 daddr, __be16 dport)
{
	if (set_addr(skb, p, IP_SRC_OFF, p->saddr, saddr) < 0)
		return -1;
	if (set_addr(skb, p, IP_DST_OFF, p->daddr, daddr) < 0)
		return -1;
	if (set_port(skb, p, p->l4off, p->sport, sport) < 0)
		return -1;
	return set_port(skb, p, p->l4off + 2, p->dport, dport);
}

// fib_redirect sends a translated packet straight out of the interface the
// routing table chooses. SNATed packets must not enter the local stack: their
// source address (the node's, or the frontend) is local, which the kernel's
// input routing drops as martian.
static __always_inline int fib_redirect(struct __sk_buff *skb, __be32 saddr, __be32 daddr, const struct pkt *p)
{
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	long rc;

	fib.family = AF_INET;
	fib.l4_protocol = p->proto;
	fib.tot_len = p->tot_len;
	fib.ipv4_src = saddr;
	fib.ipv4_dst = daddr;
	fib.ifindex = skb->ingress_ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0) < 0)
			return TCX_DROP;
		return bpf_redirect(fib.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		nh.nh_family = AF_INET;
		nh.ipv4_nh = fib.ipv4_dst;
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	return TCX_DROP;
}

// ct_touch records activity on a flow (and its end, for TCP).
static __always_inline void ct_touch(struct lb4_ct_val *v, const struct pkt *p, __u32 now)
{
	if (v->last_seen != now)
		v->last_seen = now;
	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST) && !(v->flags & CT_F_CLOSING))
		v->flags |= CT_F_CLOSING;
}

static __always_inline int ct_expired(const struct lb4_ct_val *v, __u8 proto, __u32 now)
{
	__u32 idle = CT_IDLE_TCP;

	if (v->flags & CT_F_CLOSING)
		idle = CT_IDLE_CLOSING;
	else if (proto == IPPROTO_UDP)
		idle = CT_IDLE_UDP;
	return now - v->last_seen > idle;
}

// snat_claim reserves a node port for the reply tuple of a SNATed flow.
static __always_inline __be16 snat_claim(struct lb4_ct_key *rkey, struct lb4_ct_val *rval, __u32 now)
{
	struct lb4_ct_val *old;
	__be16 port;
	int i;

	for (i = 0; i < SNAT_TRIES; i++) {
		port = bpf_htons(SNAT_PORT_MIN + bpf_get_prandom_u32() % SNAT_PORT_COUNT);
		rkey->dport = port;
		if (bpf_map_update_elem(&lb4_ct, rkey, rval, BPF_NOEXIST) == 0)
			return port;
		old = bpf_map_lookup_elem(&lb4_ct, rkey);
		if (old && ct_expired(old, rkey->proto, now) &&
		    bpf_map_update_elem(&lb4_ct, rkey, rval, BPF_EXIST) == 0)
			return port;
	}
	return 0;
}

SEC("tcx/ingress")
int lb4_ingress(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct lb4_ct_key rkey = {};
	struct lb4_ct_key fkey = {};
	struct lb4_ct_val v = {};
	struct lb4_ct_val r = {};
	struct lb4_ct_val *ct;
	struct lb4_key key = {};
	struct lb4_service *svc;
	struct lb4_backend be = {};
	struct lb4_backend *cur;
	struct lb4_config *cfg;
	__u32 zero = 0;
	__u32 now;
	__u32 id;
	__u8 scope;
	__be16 port;

	if (parse4(skb, &p) < 0)
		return TCX_NEXT;
	now = bpf_ktime_get_coarse_ns() / NSEC_PER_SEC;

	// A reply of a SNATed flow: back to the client, from the frontend.
	rkey.saddr = p.saddr;
	rkey.daddr = p.daddr;
	rkey.sport = p.sport;
	rkey.dport = p.dport;
	rkey.proto = p.proto;
	rkey.dir = CT_REV;
	ct = bpf_map_lookup_elem(&lb4_ct, &rkey);
	if (ct && (ct->flags & CT_F_SNAT)) {
		ct_touch(ct, &p, now);
		v = *ct;
		if (rewrite(skb, &p, v.nat_addr, v.nat_port, v.snat_addr, v.snat_port) < 0)
			return TCX_DROP;
		return fib_redirect(skb, v.nat_addr, v.snat_addr, &p);
	}

	key.addr = p.daddr;
	key.port = p.dport;
	key.proto = p.proto;
	svc = bpf_map_lookup_elem(&lb4_services, &key);
	if (!svc || !(svc->flags & SVC_F_EXTERNAL))
		return TCX_NEXT;
	scope = (svc->flags & SVC_F_LOCAL_ONLY) ? SCOPE_LOCAL : SCOPE_ALL;

	fkey.saddr = p.saddr;
	fkey.daddr = p.daddr;
	fkey.sport = p.sport;
	fkey.dport = p.dport;
	fkey.proto = p.proto;
	fkey.dir = CT_FWD;
	ct = bpf_map_lookup_elem(&lb4_ct, &fkey);
	if (ct && ct->svc_id == svc->svc_id) {
		cur = valid_backend(ct->backend_id, svc->svc_id);
		if (!cur || cur->addr != ct->nat_addr || cur->port != ct->nat_port)
			ct = NULL;
	} else {
		ct = NULL;
	}
	if (ct) {
		ct_touch(ct, &p, now);
		v = *ct;
	} else {
		id = pick_backend(&key, svc, scope, p.saddr, 0, &be);
		if (!id)
			return TCX_DROP;
		v.nat_addr = be.addr;
		v.nat_port = be.port;
		v.backend_id = id;
		v.svc_id = svc->svc_id;
		v.last_seen = now;
		r.nat_addr = p.daddr;
		r.nat_port = p.dport;
		r.backend_id = id;
		r.svc_id = svc->svc_id;
		r.last_seen = now;
		rkey.saddr = be.addr;
		rkey.sport = be.port;
		cfg = bpf_map_lookup_elem(&lb4_config, &zero);
		if (scope == SCOPE_ALL && !(be.flags & BE_F_LOCAL) && cfg && cfg->node_addr) {
			// Remote backend: replies must come back through this
			// node, so the client is hidden behind the node address.
			r.flags = CT_F_SNAT;
			r.snat_addr = p.saddr;
			r.snat_port = p.sport;
			rkey.daddr = cfg->node_addr;
			port = snat_claim(&rkey, &r, now);
			if (!port)
				return TCX_DROP;
			v.flags = CT_F_SNAT;
			v.snat_addr = rkey.daddr;
			v.snat_port = port;
		} else {
			rkey.daddr = p.saddr;
			rkey.dport = p.sport;
			bpf_map_update_elem(&lb4_ct, &rkey, &r, BPF_ANY);
		}
		bpf_map_update_elem(&lb4_ct, &fkey, &v, BPF_ANY);
	}

	if (v.flags & CT_F_SNAT) {
		if (rewrite(skb, &p, v.snat_addr, v.snat_port, v.nat_addr, v.nat_port) < 0)
			return TCX_DROP;
		return fib_redirect(skb, v.snat_addr, v.nat_addr, &p);
	}
	if (rewrite(skb, &p, p.saddr, p.sport, v.nat_addr, v.nat_port) < 0)
		return TCX_DROP;
	// A local backend (or one reached without SNAT): the kernel forwards.
	return TCX_PASS;
}

SEC("tcx/egress")
int lb4_egress(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct lb4_ct_key rkey = {};
	struct lb4_ct_val *ct;
	__be32 saddr;
	__be16 sport;

	if (parse4(skb, &p) < 0)
		return TCX_NEXT;
	rkey.saddr = p.saddr;
	rkey.daddr = p.daddr;
	rkey.sport = p.sport;
	rkey.dport = p.dport;
	rkey.proto = p.proto;
	rkey.dir = CT_REV;
	ct = bpf_map_lookup_elem(&lb4_ct, &rkey);
	if (!ct || (ct->flags & CT_F_SNAT))
		return TCX_NEXT;
	ct_touch(ct, &p, bpf_ktime_get_coarse_ns() / NSEC_PER_SEC);
	saddr = ct->nat_addr;
	sport = ct->nat_port;
	// A reply of a backend reached without SNAT: from the frontend.
	if (rewrite(skb, &p, saddr, sport, p.daddr, p.dport) < 0)
		return TCX_DROP;
	return TCX_PASS;
}
