/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header parsing. Every access is bounds-checked against data_end; any
 * frame that does not parse cleanly is reported, never touched, so the
 * kernel sees it exactly as it arrived. */
#ifndef XLB_PARSE_H
#define XLB_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"
#include "lb_structs.h"

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif
#define XLB_IP_DF 0x4000
#define XLB_IP_MF 0x2000
#define XLB_IP_OFFSET 0x1FFF
#define XLB_IP6_MF 0x0001
#define XLB_IP6_OFFSET 0xFFF8
#define XLB_VLAN_VID_MASK 0x0FFF

/* What parsing found. Anything but XLB_PARSE_OK maps to a counter and
 * XDP_PASS. */
enum xlb_parse {
	XLB_PARSE_OK = 0,
	XLB_PARSE_NOT_IP,
	XLB_PARSE_MALFORMED,
	XLB_PARSE_FRAGMENT,  /* an IPv6 extension header the program does not follow */
	XLB_PARSE_NOT_L4,
	/* Found by relay.h. */
	XLB_PARSE_FRAG_UNKNOWN,
	XLB_PARSE_ICMP_NO_FLOW,
};

/* packet.frag: where a frame stands in a fragmented datagram. */
enum xlb_frag {
	XLB_FRAG_NONE = 0,
	XLB_FRAG_FIRST,  /* offset 0, more to come: it has the ports */
	XLB_FRAG_LATER,  /* offset > 0: its ports come from the first's record */
};

/* The IPv6 fragment header (RFC 8200 4.5). */
struct frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3, M in bit 0 */
	__be32 identification;
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* What parsing found. parse reads up to the IP header and leaves where the
 * transport header starts, so that a frame for no VIP costs no more than
 * that; parse_ports reads the rest. */
struct packet {
	struct flow_key key;
	__u16 l4len;    /* what the IP header says follows it */
	/* The transport header's offset in the frame, at most 78 (Ethernet,
	 * a tag, IPv4 with options): a byte keeps the verifier's bound on it
	 * small enough to check accesses against data_end. */
	__u8 l4off;
	__u8 tcp_flags; /* TCP header byte 13: FIN=0x01 SYN=0x02 RST=0x04 ACK=0x10 */
	__u8 frag;      /* XLB_FRAG_* */
	/* An ICMP message (not fragmented), for relay.h to read; once it
	 * parsed, an error to relay to the real server of the flow it
	 * quotes, key being that flow's (client to VIP), not the ICMP
	 * packet's. */
	__u8 icmp;
	/* The datagram's identification, as on the wire (IPv4's 16 bits in
	 * the first two bytes), when frag is set. */
	__u32 frag_id;
	__u16 vlan;     /* VLAN id of the tag, 0 untagged (or priority-tagged) */
};

#define XLB_TCP_FIN 0x01
#define XLB_TCP_SYN 0x02
#define XLB_TCP_RST 0x04
#define XLB_TCP_ACK 0x10

/* parse_ports reads the ports (and TCP flags) of the transport header
 * parse located. A header cut short by the IP length is malformed even
 * when the frame's padding would cover it. */
static __always_inline int parse_ports(void *data, void *data_end, struct packet *p)
{
	void *l4 = data + p->l4off;

	if (p->key.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || p->l4len < sizeof(*th))
			return XLB_PARSE_MALFORMED;
		p->key.sport = th->source;
		p->key.dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		return XLB_PARSE_OK;
	}
	{
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || p->l4len < sizeof(*uh))
			return XLB_PARSE_MALFORMED;
		p->key.sport = uh->source;
		p->key.dport = uh->dest;
		return XLB_PARSE_OK;
	}
}

static __always_inline int parse_ipv4(void *data, void *l3, void *data_end, struct packet *p)
{
	struct iphdr *iph = l3;
	__u32 hlen;

	if ((void *)(iph + 1) > data_end)
		return XLB_PARSE_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return XLB_PARSE_MALFORMED;
	hlen = iph->ihl * 4;
	/* tot_len may be shorter than the frame (Ethernet padding), never
	 * longer, and never shorter than its own header. */
	if (bpf_ntohs(iph->tot_len) < hlen ||
	    l3 + bpf_ntohs(iph->tot_len) > data_end)
		return XLB_PARSE_MALFORMED;
	p->key.family = XLB_AF_INET;
	p->key.proto = iph->protocol;
	__builtin_memcpy(p->key.src, &iph->saddr, 4);
	__builtin_memcpy(p->key.dst, &iph->daddr, 4);
	if (iph->frag_off & bpf_htons(XLB_IP_MF | XLB_IP_OFFSET)) {
		/* Only the first fragment has ports: relay.h records them
		 * for the others, keyed as the receiver reassembles. */
		if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
			return XLB_PARSE_NOT_L4;
		__builtin_memcpy(&p->frag_id, &iph->id, sizeof(iph->id));
		p->frag = iph->frag_off & bpf_htons(XLB_IP_OFFSET) ? XLB_FRAG_LATER : XLB_FRAG_FIRST;
	} else if (iph->protocol == IPPROTO_ICMP) {
		p->icmp = 1;
	} else if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP) {
		return XLB_PARSE_NOT_L4;
	}
	p->l4off = l3 + hlen - data;
	p->l4len = bpf_ntohs(iph->tot_len) - hlen;
	return XLB_PARSE_OK;
}

/* parse_ipv6_frag reads a fragment header that follows the fixed header
 * directly, the only place the program looks for one; the header's next
 * header is the transport protocol in every fragment. An atomic fragment
 * (offset 0, no more to come, RFC 6946) is a whole datagram. */
static __always_inline int parse_ipv6_frag(void *data, struct ipv6hdr *ip6h, void *data_end,
					   struct packet *p)
{
	struct frag_hdr *fh = (void *)(ip6h + 1);
	__u16 plen = bpf_ntohs(ip6h->payload_len);

	if ((void *)(fh + 1) > data_end || plen < sizeof(*fh))
		return XLB_PARSE_MALFORMED;
	if (fh->nexthdr != IPPROTO_TCP && fh->nexthdr != IPPROTO_UDP)
		return XLB_PARSE_FRAGMENT;
	p->key.proto = fh->nexthdr;
	if (fh->frag_off & bpf_htons(XLB_IP6_OFFSET | XLB_IP6_MF)) {
		__builtin_memcpy(&p->frag_id, &fh->identification, sizeof(p->frag_id));
		p->frag = fh->frag_off & bpf_htons(XLB_IP6_OFFSET) ? XLB_FRAG_LATER : XLB_FRAG_FIRST;
	}
	p->l4off = (void *)(fh + 1) - data;
	p->l4len = plen - sizeof(*fh);
	return XLB_PARSE_OK;
}

static __always_inline int parse_ipv6(void *data, void *l3, void *data_end, struct packet *p)
{
	struct ipv6hdr *ip6h = l3;

	if ((void *)(ip6h + 1) > data_end)
		return XLB_PARSE_MALFORMED;
	if (ip6h->version != 6)
		return XLB_PARSE_MALFORMED;
	if ((void *)(ip6h + 1) + bpf_ntohs(ip6h->payload_len) > data_end)
		return XLB_PARSE_MALFORMED;
	p->key.family = XLB_AF_INET6;
	p->key.proto = ip6h->nexthdr;
	__builtin_memcpy(p->key.src, &ip6h->saddr, 16);
	__builtin_memcpy(p->key.dst, &ip6h->daddr, 16);
	switch (ip6h->nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		p->l4off = (void *)(ip6h + 1) - data;
		p->l4len = bpf_ntohs(ip6h->payload_len);
		return XLB_PARSE_OK;
	case IPPROTO_ICMPV6:
		p->icmp = 1;
		p->l4off = (void *)(ip6h + 1) - data;
		p->l4len = bpf_ntohs(ip6h->payload_len);
		return XLB_PARSE_OK;
	case IPPROTO_FRAGMENT:
		return parse_ipv6_frag(data, ip6h, data_end, p);
	/* Other extension headers (chains the kernel handles better) go
	 * to the stack. */
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
		return XLB_PARSE_FRAGMENT;
	}
	return XLB_PARSE_NOT_L4;
}

/* parse fills p's addresses and protocol from an Ethernet frame with at
 * most one VLAN tag, and locates its TCP or UDP header. */
static __always_inline int parse(void *data, void *data_end, struct packet *p)
{
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__be16 proto;

	if (l3 > data_end)
		return XLB_PARSE_MALFORMED;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return XLB_PARSE_MALFORMED;
		proto = vh->proto;
		p->vlan = bpf_ntohs(vh->tci) & XLB_VLAN_VID_MASK;
		l3 = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(data, l3, data_end, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(data, l3, data_end, p);
	return XLB_PARSE_NOT_IP;
}

#endif
