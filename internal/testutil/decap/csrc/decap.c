/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xdp_decap takes the tunnel header off what a balancer sent a TUN real
 * server, for kernels built without the ipip, ip6_tunnel and fou modules
 * (the test VMs' kernel among them): the inner packet then reaches the
 * stack as if it had arrived unencapsulated on the same interface, with
 * the client's source and the VIP as destination, which is all a TUN real
 * server's kernel devices would have made of it. scripts/realserver.sh
 * attaches it with iproute2 (`--decap-obj`); it has no maps, so iproute2
 * can load it.
 *
 * It strips IPv4 or IPv6 outer headers carrying IPIP (4) or IPv6 (41), and
 * GUE on UDP port XLB_GUE_PORT in both variants Linux's fou accepts:
 * variant 0 (a 4-byte header plus options, inner protocol in the header)
 * and variant 1 (the inner IP packet right after the UDP header). Outer
 * IPv6 extension headers, GUE control messages and anything that does not
 * parse are passed untouched, as a kernel without a decapsulator would see
 * them. The outer destination is not checked: the interface it is attached
 * to is the real server's, and only tunnels to it arrive there. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* The port the end-to-end tests configure (`type gue port 6080`); iproute2
 * cannot set a program's constants, so it is fixed here and realserver.sh
 * refuses any other port with this program. */
#define XLB_GUE_PORT 6080

#define GUE_VERSION_MASK 0xc0
#define GUE_V0 0x00
#define GUE_V1 0x40
#define GUE_C_BIT 0x20
#define GUE_HLEN_MASK 0x1f

/* inner_eth_proto maps an IP protocol number carried by a tunnel to the
 * EtherType the inner packet needs, 0 for any other. */
static __always_inline __u16 inner_eth_proto(__u8 proto)
{
	if (proto == IPPROTO_IPIP)
		return bpf_htons(ETH_P_IP);
	if (proto == IPPROTO_IPV6)
		return bpf_htons(ETH_P_IPV6);
	return 0;
}

/* gue_inner reads the GUE header at udp+1 and returns the EtherType of the
 * inner packet and, in *hdr, the bytes between the UDP header and it. */
static __always_inline __u16 gue_inner(void *gue, void *end, int *hdr)
{
	__u8 *b = gue;

	if ((void *)(b + 4) > end)
		return 0;
	switch (b[0] & GUE_VERSION_MASK) {
	case GUE_V1:
		/* Direct IP: the version nibble is the first byte's top half. */
		*hdr = 0;
		if ((b[0] >> 4) == 4)
			return bpf_htons(ETH_P_IP);
		if ((b[0] >> 4) == 6)
			return bpf_htons(ETH_P_IPV6);
		return 0;
	case GUE_V0:
		if (b[0] & GUE_C_BIT)
			return 0;
		*hdr = 4 + (b[0] & GUE_HLEN_MASK) * 4;
		return inner_eth_proto(b[1]);
	}
	return 0;
}

/* strip removes outer bytes after the Ethernet header and gives the frame
 * the inner EtherType. */
static __always_inline int strip(struct xdp_md *ctx, int outer, __u16 proto)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr eth;
	struct ethhdr *neth;

	if (data + sizeof(eth) > end)
		return XDP_PASS;
	__builtin_memcpy(&eth, data, sizeof(eth));
	if (bpf_xdp_adjust_head(ctx, outer))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	neth = data;
	/* The head has moved: a frame too short for an Ethernet header now
	 * cannot be given back as it was. */
	if ((void *)(neth + 1) > end)
		return XDP_DROP;
	eth.h_proto = proto;
	__builtin_memcpy(neth, &eth, sizeof(eth));
	return XDP_PASS;
}

/* after_l3 decides on what follows an outer IP header of hlen bytes at l3
 * that carries protocol proto. */
static __always_inline int after_l3(struct xdp_md *ctx, void *l3, int hlen, __u8 proto)
{
	void *end = (void *)(long)ctx->data_end;
	struct udphdr *udp;
	__u16 inner;
	int gue = 0;

	inner = inner_eth_proto(proto);
	if (inner)
		return strip(ctx, hlen, inner);
	if (proto != IPPROTO_UDP)
		return XDP_PASS;
	udp = l3 + hlen;
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(XLB_GUE_PORT))
		return XDP_PASS;
	inner = gue_inner(udp + 1, end, &gue);
	if (!inner)
		return XDP_PASS;
	return strip(ctx, hlen + sizeof(*udp) + gue, inner);
}

SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip4;
	struct ipv6hdr *ip6;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		ip4 = (void *)(eth + 1);
		if ((void *)(ip4 + 1) > end || ip4->ihl < 5)
			return XDP_PASS;
		/* A fragment of a tunnelled packet needs reassembly first,
		 * which only the stack can do. */
		if (ip4->frag_off & bpf_htons(0x3fff))
			return XDP_PASS;
		return after_l3(ctx, ip4, ip4->ihl * 4, ip4->protocol);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		return after_l3(ctx, ip6, sizeof(*ip6), ip6->nexthdr);
	}
	return XDP_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";
