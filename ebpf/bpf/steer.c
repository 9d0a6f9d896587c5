// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
//
// Socket steering for the node's Ingress proxy (IPv4, TCP).
//
// An sk_lookup program, attached to the node's network namespace, runs when
// the kernel looks for the listening socket of a new TCP connection (a SYN
// that matched no established socket). If the destination address is one of
// the node's steered addresses (steer4_addrs) and a listening socket is set
// for the destination port (steer4_socks), the connection goes to that
// socket, whatever address and port the socket is bound to. So the proxy
// listens once (on 127.0.0.1:0, say) and serves ports 80 and 443 of every
// node and LoadBalancer address, including addresses added later.
//
// Invariant: anything else is left to the kernel's normal lookup (SK_PASS
// without assignment), never dropped. That includes a steered port whose
// socket is gone: the kernel removes a socket from steer4_socks when it
// closes, and its connections are then refused as if nothing were there.
// Several nodes' programs may be attached to one namespace, each with its
// own maps; the first one to assign a socket wins.
//
// The layouts below are mirrored in Go (steer.go).

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2

// steer4_addrs: the steered destination addresses (network byte order).
// The value is unused (1).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __be32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer4_addrs SEC(".maps");

// steer4_socks: destination port (host byte order, as ctx->local_port) ->
// the listening socket that serves it. Written with a socket's file
// descriptor; read from user space it gives the socket's cookie.
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer4_socks SEC(".maps");

SEC("sk_lookup")
int steer4_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->family != AF_INET || ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	__be32 addr = ctx->local_ip4;
	if (!bpf_map_lookup_elem(&steer4_addrs, &addr))
		return SK_PASS;
	__u32 port = ctx->local_port;
	struct bpf_sock *sk = bpf_map_lookup_elem(&steer4_socks, &port);
	if (!sk)
		return SK_PASS;
	// A failure (another program assigned first; a socket of the wrong
	// kind) leaves the connection to the normal lookup.
	bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	return SK_PASS;
}
