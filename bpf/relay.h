/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packets of a VIP flow that do not carry the flow's ports: ICMP errors,
 * which quote them, and later fragments, whose first fragment had them.
 * Each is given the 5-tuple of its flow, so that it follows the flow's
 * entry to the real server that holds the connection, as IPVS does with
 * ip_vs_in_icmp and with the reassembled datagram. */
#ifndef XLB_RELAY_H
#define XLB_RELAY_H

#include "lb_maps.h"
#include "parse.h"

/* linux/icmp.h drags in libc headers through linux/if.h: the few ICMP
 * numbers needed are spelled here. */
enum xlb_icmp_type {
	XLB_ICMP_DEST_UNREACH = 3,
	XLB_ICMP_SOURCE_QUENCH = 4,
	XLB_ICMP_TIME_EXCEEDED = 11,
	XLB_ICMP6_DEST_UNREACH = 1,
	XLB_ICMP6_PARAMPROB = 4,
};

/* The ICMP and ICMPv6 header up to where an error's quote starts. */
struct icmp_err_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest; /* unused, or the MTU of frag-needed and packet too big */
};

/* The ports at the start of a TCP or UDP header: all the program reads
 * of a quoted transport header, of which an ICMP error carries at least
 * 8 bytes (RFC 792, RFC 4443 as much as fits). */
struct l4_ports {
	__be16 source;
	__be16 dest;
};

/* icmp4_error reports whether an ICMP type is one IPVS relays for its
 * connections: the unreachables (fragmentation needed among them),
 * source quench and time exceeded. */
static __always_inline int icmp4_error(__u8 type)
{
	return type == XLB_ICMP_DEST_UNREACH || type == XLB_ICMP_SOURCE_QUENCH ||
	       type == XLB_ICMP_TIME_EXCEEDED;
}

/* icmp6_error: destination unreachable, packet too big, time exceeded
 * and parameter problem, the errors RFC 4443 defines; the other types below
 * 128 are unassigned or experimental. */
static __always_inline int icmp6_error(__u8 type)
{
	return type >= XLB_ICMP6_DEST_UNREACH && type <= XLB_ICMP6_PARAMPROB;
}

/* quote_key makes p's key the tuple of the flow the quoted packet belongs
 * to. The quote is the real server's reply, from the VIP to the client:
 * reversed, it is the client's flow to the VIP. It must come from the
 * address the ICMP error was sent to, or the error would be delivered
 * through another VIP's flow. */
static __always_inline int quote_key(struct packet *p, const void *qsrc, const void *qdst,
				     __u8 proto, const struct l4_ports *qp)
{
	const __u32 *vip = (const __u32 *)p->key.dst;
	__u32 a[4] = {};

	/* IPv4 addresses are one word: the rest of the key is zero. */
	if (p->key.family == XLB_AF_INET) {
		__builtin_memcpy(a, qsrc, 4);
		if (a[0] != vip[0])
			return XLB_PARSE_ICMP_NO_FLOW;
		__builtin_memcpy(p->key.src, qdst, 4);
	} else {
		__builtin_memcpy(a, qsrc, 16);
		if ((a[0] ^ vip[0]) | (a[1] ^ vip[1]) | (a[2] ^ vip[2]) | (a[3] ^ vip[3]))
			return XLB_PARSE_ICMP_NO_FLOW;
		__builtin_memcpy(p->key.src, qdst, 16);
	}
	p->key.sport = qp->dest;
	p->key.dport = qp->source;
	p->key.proto = proto;
	p->icmp = 1;
	return XLB_PARSE_OK;
}

/* icmp4_quote reads an ICMP error and the IPv4 header and ports it
 * quotes. Only the quote's first 8 transport bytes are sure to be there:
 * the quoted lengths describe the original packet, not the quote. */
static __always_inline int icmp4_quote(void *data, void *data_end, struct packet *p)
{
	struct icmp_err_hdr *ic = data + p->l4off;
	struct iphdr *in = (void *)(ic + 1);
	struct l4_ports *qp;
	__u32 hlen;

	if ((void *)(ic + 1) > data_end || p->l4len < sizeof(*ic))
		return XLB_PARSE_MALFORMED;
	if (!icmp4_error(ic->type))
		return XLB_PARSE_NOT_L4;
	if ((void *)(in + 1) > data_end)
		return XLB_PARSE_MALFORMED;
	if (in->version != 4 || in->ihl < 5)
		return XLB_PARSE_MALFORMED;
	/* A quoted later fragment has no ports to find its flow by. */
	if ((in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP) ||
	    (in->frag_off & bpf_htons(XLB_IP_OFFSET)))
		return XLB_PARSE_NOT_L4;
	hlen = in->ihl * 4;
	qp = (void *)in + hlen;
	if ((void *)(qp + 1) > data_end ||
	    p->l4len < sizeof(*ic) + hlen + sizeof(*qp))
		return XLB_PARSE_MALFORMED;
	return quote_key(p, &in->saddr, &in->daddr, in->protocol, qp);
}

/* icmp6_quote is icmp4_quote for ICMPv6, whose quote must have its
 * transport header right after the fixed IPv6 header. */
static __always_inline int icmp6_quote(void *data, void *data_end, struct packet *p)
{
	struct icmp_err_hdr *ic = data + p->l4off;
	struct ipv6hdr *in = (void *)(ic + 1);
	struct l4_ports *qp = (void *)(in + 1);

	if ((void *)(ic + 1) > data_end || p->l4len < sizeof(*ic))
		return XLB_PARSE_MALFORMED;
	if (!icmp6_error(ic->type))
		return XLB_PARSE_NOT_L4;
	if ((void *)(qp + 1) > data_end ||
	    p->l4len < sizeof(*ic) + sizeof(*in) + sizeof(*qp))
		return XLB_PARSE_MALFORMED;
	if (in->version != 6)
		return XLB_PARSE_MALFORMED;
	if (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP)
		return XLB_PARSE_NOT_L4;
	return quote_key(p, &in->saddr, &in->daddr, in->nexthdr, qp);
}

/* frag_key_of is the record key of p's datagram. */
static __always_inline void frag_key_of(const struct packet *p, struct frag_key *fk)
{
	__builtin_memcpy(fk->src, p->key.src, sizeof(fk->src));
	__builtin_memcpy(fk->dst, p->key.dst, sizeof(fk->dst));
	fk->id = p->frag_id;
	fk->proto = p->key.proto;
	fk->family = p->key.family;
}

/* frag_record keeps the first fragment's ports for the later ones. A
 * failed update (no memory) costs the later fragments only: they pass. */
static __always_inline void frag_record(const struct packet *p)
{
	struct frag_key fk = {};
	struct frag_ports v = {
		.sport = p->key.sport,
		.dport = p->key.dport,
		.tcp_flags = p->tcp_flags,
	};

	frag_key_of(p, &fk);
	bpf_map_update_elem(&frags, &fk, &v, BPF_ANY);
}

/* frag_ports gives a later fragment its first fragment's ports and TCP
 * flags, so that it finds its flow and moves it exactly as the first one
 * did. A later fragment that overtook its first one has no record and is
 * passed: the balancer's kernel never sees the rest of the datagram and
 * drops it after its reassembly timeout, as a lost fragment would be. */
static __always_inline int frag_ports(struct packet *p)
{
	struct frag_key fk = {};
	struct frag_ports *v;

	frag_key_of(p, &fk);
	v = bpf_map_lookup_elem(&frags, &fk);
	if (!v)
		return XLB_PARSE_FRAG_UNKNOWN;
	p->key.sport = v->sport;
	p->key.dport = v->dport;
	p->tcp_flags = v->tcp_flags;
	return XLB_PARSE_OK;
}

/* relay_parse finishes parsing what parse left to it, once the VIP
 * filter let it through: the quote of an ICMP message, or the ports of a
 * later fragment. */
static __always_inline int relay_parse(void *data, void *data_end, struct packet *p)
{
	if (p->frag == XLB_FRAG_LATER)
		return frag_ports(p);
	p->icmp = 0; /* until it is found to be an error to relay */
	if (p->key.family == XLB_AF_INET)
		return icmp4_quote(data, data_end, p);
	return icmp6_quote(data, data_end, p);
}

#endif
