/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xlb_xdp: direct-routing load balancing. A frame for a VIP service gets
 * the backend's MAC as destination and goes back out of the interface it
 * came in on; IP and L4 bytes stay as they are, so the real server sees
 * the client's address and answers it directly. Everything else passes to
 * the kernel untouched. */
#include "jhash.h"
#include "lb_maps.h"
#include "parse.h"
#include "relay.h"

/* Read-only after load: internal/datapath sets it per interface. */
const volatile struct xlb_config xlb_cfg = {};

/* Writable at any time: internal/datapath maps .bss and stores the
 * timeouts there, a plain load for the program where a map lookup would
 * be a call. */
struct xlb_settings settings = {};

/* Never read. bpf2go emits Go only for types in the object's BTF, and
 * clang puts an enum there only when some symbol's type refers to it: this
 * one's does, so internal/datapath takes the constants of lb_consts.h from
 * lb_bpfel.go instead of copying them. It sits in .rodata beside xlb_cfg,
 * so it costs no map and no instruction. */
const struct xlb_go_consts {
	enum xlb_counter counter;
	enum xlb_family family;
	enum xlb_svc_flags svc_flags;
	enum xlb_be_flags be_flags;
	enum xlb_flow_state flow_state;
	enum xlb_atime atime;
	enum xlb_vip_filter vip_filter;
} xlb_go_consts = {};

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline void account(__u32 idx, __u64 bytes, __u64 new_flow)
{
	struct lb_stats *c = bpf_map_lookup_elem(&stats, &idx);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
		c->flows += new_flow;
	}
}

/* xlb_flow_hash is the Maglev hash of a flow: the whole 5-tuple, or only
 * the source address for source-hash services. */
static __always_inline __u32 xlb_flow_hash(const struct flow_key *k, __u32 svc_flags)
{
	if (svc_flags & XLB_SVC_F_HASH_SRC)
		return xlb_jhash2((const __u32 *)k->src, 4, XLB_HASH_SEED);
	return xlb_jhash2((const __u32 *)k, sizeof(*k) / 4, XLB_HASH_SEED);
}

/* pick returns the Maglev choice for the flow, 0 if the service has none.
 * The index is hash * size >> 32: uniform like a modulo, without a divide. */
static __always_inline __u32 pick(const struct vip_meta *svc, const struct flow_key *k)
{
	__u32 table = svc->table;
	void *inner = bpf_map_lookup_elem(&maglev, &table);
	__u32 idx, *id;

	if (!inner)
		return 0;
	idx = ((__u64)xlb_flow_hash(k, svc->flags) * svc->size) >> 32;
	id = bpf_map_lookup_elem(inner, &idx);
	return id ? *id : 0;
}

/* next_state is the input-only TCP state machine of IPVS direct routing. */
static __always_inline __u8 next_state(__u8 proto, __u8 flags, __u8 cur)
{
	if (proto != IPPROTO_TCP)
		return XLB_FLOW_UDP;
	if (flags & XLB_TCP_RST)
		return XLB_FLOW_CLOSE;
	if (flags & XLB_TCP_FIN)
		return XLB_FLOW_FIN;
	if (flags & XLB_TCP_SYN)
		return cur ? cur : XLB_FLOW_SYN;
	if (cur == XLB_FLOW_FIN || cur == XLB_FLOW_CLOSE)
		return cur;
	return XLB_FLOW_EST;
}

/* A SYN without ACK on a finished flow is a new connection reusing the
 * tuple: it is scheduled afresh (IPVS conn_reuse_mode), so a draining
 * backend does not get it. */
static __always_inline int is_reuse(__u8 flags, __u8 state)
{
	return (flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN &&
	       (state == XLB_FLOW_FIN || state == XLB_FLOW_CLOSE);
}

/* flow4_of is the IPv4 flow table's key of a frame. */
static __always_inline void flow4_of(const struct flow_key *k, struct flow4_key *k4)
{
	__builtin_memcpy(k4->src, k->src, 4);
	__builtin_memcpy(k4->dst, k->dst, 4);
	k4->sport = k->sport;
	k4->dport = k->dport;
	k4->proto = k->proto;
}


/* Clang merges two calls that differ only in their arguments into one
 * after a branch, which turns a call the verifier specialises per map
 * into an indirect one. An empty asm naming a different constant after
 * each keeps them apart. */
#define XLB_KEEP_APART(tag) asm volatile("" : : "i"(tag))

/* flow_lookup finds the frame's entry in its family's flow table, else in
 * probation (*young set). Each map has a call of its own: a call the
 * verifier sees with two maps is compiled as an indirect one. */
static __always_inline struct flow *flow_lookup(const struct packet *p, const struct flow4_key *k4,
						int *young)
{
	struct flow *f;

	*young = 0;
	if (p->key.family == XLB_AF_INET) {
		f = bpf_map_lookup_elem(&flows4, k4);
		if (f)
			return f;
		*young = 1;
		f = bpf_map_lookup_elem(&probation4, k4);
		XLB_KEEP_APART(4);
		return f;
	}
	f = bpf_map_lookup_elem(&flows6, &p->key);
	if (f)
		return f;
	*young = 1;
	f = bpf_map_lookup_elem(&probation6, &p->key);
	XLB_KEEP_APART(6);
	return f;
}

/* probation_insert puts a new flow into probation. */
static __always_inline void probation_insert(const struct packet *p, const struct flow4_key *k4,
					     const struct flow *nf)
{
	if (p->key.family == XLB_AF_INET) {
		bpf_map_update_elem(&probation4, k4, nf, BPF_ANY);
		XLB_KEEP_APART(4);
	} else {
		bpf_map_update_elem(&probation6, &p->key, nf, BPF_ANY);
		XLB_KEEP_APART(6);
	}
}

/* promote moves a flow that lasted from probation to the flow table,
 * unless the table is full (or another CPU just did it). The entry it
 * leaves is deleted, so f must not be used after. */
static __always_inline void promote(const struct packet *p, const struct flow4_key *k4,
				    const struct flow *f)
{
	long err;

	if (p->key.family == XLB_AF_INET) {
		err = bpf_map_update_elem(&flows4, k4, f, BPF_NOEXIST);
		XLB_KEEP_APART(14);
	} else {
		err = bpf_map_update_elem(&flows6, &p->key, f, BPF_NOEXIST);
		XLB_KEEP_APART(16);
	}
	if (err) {
		count(XLB_CNT_PROMOTE_FULL);
		return;
	}
	if (p->key.family == XLB_AF_INET) {
		bpf_map_delete_elem(&probation4, k4);
		XLB_KEEP_APART(24);
	} else {
		bpf_map_delete_elem(&probation6, &p->key);
		XLB_KEEP_APART(26);
	}
	count(XLB_CNT_FLOW_PROMOTED);
}

/* age is how many clock units before now a stamp was. Signed: another
 * CPU may have stamped the entry after this one read the clock, and a
 * unit later, which is an age of -1, not of 2^32 - 1 (that would expire
 * a busy flow). The difference survives the wrap of the stamp. */
static __always_inline __s32 age(__u32 now, __u32 stamp)
{
	return (__s32)(now - stamp);
}

/* lasted reports whether a flow in probation has earned the flow table:
 * established (or UDP), and a packet at least settings.promote after its
 * first. A spoofed tuple would need the same, twice, spaced out, while
 * surviving in probation under its own flood. The caller asks once per
 * clock unit (on the packet that moves atime), so a flow kept in
 * probation by a full table costs one failed insert per unit, not one per
 * packet. */
static __always_inline int lasted(const struct flow *f, __u32 now)
{
	return (f->state == XLB_FLOW_EST || f->state == XLB_FLOW_UDP) &&
	       age(now, f->ctime) >= (__s32)settings.promote;
}

/* may_be_vip reports whether the destination may be a VIP: false for
 * almost every address that is not one, at the cost of a multiply and an
 * array load, before any 5-tuple work. The IPv6 address is folded to a
 * word first; the fold of an IPv4 address is the address. */
static __always_inline int may_be_vip(const struct packet *p)
{
	const __u32 *a = (const __u32 *)p->key.dst;
	__u32 x = a[0] ^ a[1] ^ a[2] ^ a[3];
	__u32 bit = (x * XLB_VIP_FILTER_MUL) >> (32 - XLB_VIP_FILTER_BITS);
	__u32 word = bit / 64;
	__u64 *w = bpf_map_lookup_elem(&vip_filter, &word);

	return w && (*w >> (bit % 64)) & 1;
}

/* service_of finds the service of a new flow: the one of its port, else
 * the VIP's every-port one. Its key is built here, so only a flow the
 * table does not know pays for it. */
static __always_inline struct vip_meta *service_of(const struct flow_key *k)
{
	struct vip_key vk = {};
	struct vip_meta *svc;

	__builtin_memcpy(vk.addr, k->dst, sizeof(vk.addr));
	vk.port = k->dport;
	vk.proto = k->proto;
	vk.family = k->family;
	svc = bpf_map_lookup_elem(&services, &vk);
	if (svc)
		return svc;
	vk.port = 0;
	return bpf_map_lookup_elem(&services, &vk);
}

/* expired reports whether the entry has been idle longer than its state
 * allows. */
static __always_inline int expired(const struct flow *f, __u32 now)
{
	return age(now, f->atime) > (__s32)settings.timeout[f->state & (XLB_FLOW_STATES - 1)];
}

/* for_this_host reports whether the frame is addressed to the interface's
 * MAC (always, when none is configured). A VIP frame for another host's
 * MAC reaches XDP only in promiscuous mode or through a flood where no
 * hardware filter exists (a bridge to a veth, generic XDP): the standby
 * balancer would forward it a second time. The MAC is a constant of the
 * program; when the interface's address changes, the loader writes the
 * new one to ifaces at once and loads a program with it after, so a frame
 * that does not match the constant is checked against ifaces too: in
 * between, the kernel, which holds the VIP, would otherwise take the
 * client's frames and reset its connections. */
static __always_inline int for_this_host(struct xdp_md *ctx, void *data, void *data_end)
{
	/* Byte by byte: a memcpy from the volatile config would let clang
	 * fold in the zero initialiser that the loader rewrites. */
	struct ethhdr *eth = data;
	struct xlb_iface *me;
	__u32 ifindex = ctx->ingress_ifindex;
	__u8 any = 0, diff = 0;

	if ((void *)(eth + 1) > data_end)
		return 0;
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		__u8 m = xlb_cfg.mac[i];

		any |= m;
		diff |= m ^ eth->h_dest[i];
	}
	if (!any || !diff)
		return 1;
	me = bpf_map_lookup_elem(&ifaces, &ifindex);
	if (!me)
		return 0;
	diff = 0;
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		diff |= me->mac[i] ^ eth->h_dest[i];
	return !diff;
}

/* Tunnel mode (IPVS's TUN). The inner packet stays as the client sent it;
 * an outer header of the same family takes it to the real server's
 * address, which the kernel's FIB routes: the real server may be any
 * number of hops away. */

/* The AF_* values bpf_fib_lookup takes (linux/socket.h is not a UAPI
 * header for BPF targets). */
#define XLB_SYS_AF_INET 2
#define XLB_SYS_AF_INET6 10

/* GUE version 0 with no options: a 4-byte header whose proto_ctype names
 * the inner protocol as an IP protocol number (RFC draft-ietf-intarea-gue;
 * the kernel's fou in gue mode). */
struct guehdr {
	__u8 hlen_c_ver; /* version 0, C 0, hlen 0 */
	__u8 proto_ctype;
	__be16 flags;
};

#define XLB_GUE_LEN (sizeof(struct udphdr) + sizeof(struct guehdr))

/* GUE's UDP source port: the flow hash scaled into the dynamic port range,
 * as the kernel's udp_flow_src_port does, so the real server's NIC spreads
 * flows over its receive queues while each flow keeps one. */
#define XLB_GUE_SPORT_MIN 49152
#define XLB_GUE_SPORT_SPAN 16384

static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

/* sum_words adds n 32-bit words in network order, as the Internet
 * checksum sums 16-bit ones: the one's complement sum does not care how
 * the bytes are grouped, so long as every addend is in the same order. */
static __always_inline __u64 sum_words(const __u32 *w, int n)
{
	__u64 s = 0;

#pragma unroll
	for (int i = 0; i < n; i++)
		s += w[i];
	return s;
}

/* inner_sum returns the one's complement sum of the inner packet from
 * its IP header on, without reading its payload: a valid TCP, UDP or
 * ICMPv6 checksum makes the L4 segment sum to the negated sum of its
 * pseudo-header, and a valid IPv4 header and ICMPv4 message each sum to
 * zero (the kernel's local checksum offload rests on the same fact).
 * *ok is cleared when that cannot be known: a fragment, or UDP over IPv4
 * without a checksum. */
static __always_inline __u64 inner_sum(void *in, void *data_end, __u8 family, int *ok)
{
	__u64 pseudo;

	*ok = 0;
	if (family == XLB_AF_INET) {
		struct iphdr *iph = in;
		__u32 hlen;

		if ((void *)(iph + 1) > data_end)
			return 0;
		if (iph->frag_off & bpf_htons(XLB_IP_MF | XLB_IP_OFFSET))
			return 0;
		hlen = (iph->ihl & 0xf) * 4;
		if (iph->protocol == IPPROTO_ICMP) {
			*ok = 1;
			return 0;
		}
		if (iph->protocol == IPPROTO_UDP) {
			struct udphdr *uh = in + hlen;

			if ((void *)(uh + 1) > data_end || !uh->check)
				return 0;
		} else if (iph->protocol != IPPROTO_TCP) {
			return 0;
		}
		pseudo = sum_words(&iph->saddr, 2) + bpf_htons(iph->protocol) +
			 bpf_htons(bpf_ntohs(iph->tot_len) - hlen);
		*ok = 1;
		return csum_fold(pseudo); /* the negated pseudo-header sum */
	}
	{
		struct ipv6hdr *ip6h = in;
		__u64 hdr;

		if ((void *)(ip6h + 1) > data_end)
			return 0;
		if (ip6h->nexthdr != IPPROTO_TCP && ip6h->nexthdr != IPPROTO_UDP &&
		    ip6h->nexthdr != IPPROTO_ICMPV6)
			return 0;
		/* No checksum of its own: the header's words count in full. */
		hdr = sum_words((const __u32 *)ip6h, sizeof(*ip6h) / 4);
		pseudo = sum_words((const __u32 *)&ip6h->saddr, 8) +
			 bpf_htonl((__u32)bpf_ntohs(ip6h->payload_len)) + bpf_htonl(ip6h->nexthdr);
		*ok = 1;
		return hdr + csum_fold(pseudo);
	}
}

/* spread_hash is a cheap hash of the 5-tuple for spreading tunnels over
 * queues and paths: the fold of the key's words, mixed by a multiply
 * (the Maglev hash is not at hand for a known flow, and need not be). */
static __always_inline __u32 spread_hash(const struct flow_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 x = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*k) / 4); i++)
		x ^= w[i];
	x *= XLB_VIP_FILTER_MUL;
	return x ^ (x >> 15);
}

/* tunnel_route finds the outer packet's next hop as the kernel would route
 * a packet from the balancer to the real server: the MACs to write, the
 * interface to send on, and the route's MTU. The FIB's answer is kept in
 * nexthops for the rest of the atime unit; a failed lookup is not kept,
 * and returns the FIB's reason. */
static __always_inline long tunnel_route(struct xdp_md *ctx, __u32 id, const struct backend *be,
					 struct nexthop **out, __u16 outer_len, __u8 proto,
					 __be16 sport, __u32 now, __u32 *mtu)
{
	struct nexthop *nh = bpf_map_lookup_elem(&nexthops, &id);
	struct bpf_fib_lookup fib = {};
	long rc;

	if (!nh)
		return -1;
	*out = nh;
	if (nh->gen == be->gen && nh->stamp == now) {
		*mtu = nh->mtu;
		return outer_len > nh->mtu ? BPF_FIB_LKUP_RET_FRAG_NEEDED : BPF_FIB_LKUP_RET_SUCCESS;
	}

	fib.ifindex = ctx->ingress_ifindex;
	fib.l4_protocol = proto;
	fib.sport = sport;
	fib.dport = be->port;
	fib.tot_len = outer_len;
	if (be->family == XLB_AF_INET) {
		fib.family = XLB_SYS_AF_INET;
		__builtin_memcpy(&fib.ipv4_src, be->src, 4);
		__builtin_memcpy(&fib.ipv4_dst, be->addr, 4);
	} else {
		fib.family = XLB_SYS_AF_INET6;
		__builtin_memcpy(fib.ipv6_src, be->src, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	/* Success or not, the kernel leaves the route's MTU where tot_len
	 * was. */
	*mtu = fib.mtu_result;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;
	nh->ifindex = fib.ifindex;
	__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
	__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	nh->mtu = fib.mtu_result;
	nh->stamp = now;
	nh->gen = be->gen;
	return rc;
}

/* The first 8 bytes of an ICMP error carrying an MTU, the same shape for
 * IPv4's "fragmentation needed" (RFC 1191: 16 unused bits, then the MTU)
 * and IPv6's "packet too big" (a 32-bit MTU); linux/icmp.h drags in libc
 * headers a BPF target has not. */
struct xlb_icmp_mtu {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 mtu;
};

/* too_big answers a packet that the tunnel would make too big for the
 * route with the ICMP error a router would send its source, as IPVS does
 * for TUN: IPv4 "fragmentation needed" (only with DF set: the program
 * cannot fragment, and a packet without DF is passed to the kernel),
 * IPv6 "packet too big", naming what fits once the outer header is added,
 * from the VIP the packet was sent to. The reply quotes the packet's IP
 * header (IPv4 without options) and first 8 bytes, what the source needs
 * to find its connection; it goes back to the MAC the packet came from.
 * Returns XDP_TX, or XDP_PASS with the frame unchanged. */
static __always_inline int too_big(struct xdp_md *ctx, __u32 l2len, int v4, __u32 room)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 iplen = v4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	__u32 quote = iplen + 8, head = iplen + 8, len;
	struct ethhdr *eth, *old;
	__u64 sum;

	if (l2len > sizeof(*eth) + sizeof(struct vlan_hdr) || data + l2len + quote > data_end)
		return XDP_PASS;
	/* Never an error about an error (a relayed ICMP message), nor about
	 * a fragment: RFC 1122 and 4443 forbid the first and the quote of
	 * the second names no connection. */
	if (v4) {
		struct iphdr *iph = data + l2len;

		if (iph->ihl != 5 || !(iph->frag_off & bpf_htons(XLB_IP_DF)) ||
		    (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP))
			return XDP_PASS;
	} else {
		struct ipv6hdr *ip6h = data + l2len;

		if (ip6h->nexthdr != IPPROTO_TCP && ip6h->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
	}
	len = bpf_xdp_get_buff_len(ctx);
	if (bpf_xdp_adjust_tail(ctx, (int)(l2len + quote) - (int)len))
		return XDP_PASS;
	if (bpf_xdp_adjust_head(ctx, -(int)head))
		return XDP_DROP; /* the frame is cut short: it cannot pass */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	old = data + head;
	if ((void *)eth + l2len + head + quote > data_end || (void *)(old + 1) > data_end)
		return XDP_DROP;
	/* Back where the packet came from; head (at least 28) exceeds the
	 * link-layer header (at most 18), so the copies do not overlap. */
	__builtin_memcpy(eth->h_dest, old->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, old->h_dest, ETH_ALEN);
	eth->h_proto = old->h_proto;
	if (l2len > sizeof(*eth))
		*(struct vlan_hdr *)(eth + 1) = *(struct vlan_hdr *)(old + 1);

	if (v4) {
		struct iphdr *o = (void *)eth + l2len, *q = (void *)o + head;
		struct xlb_icmp_mtu *ic = (void *)(o + 1);

		if ((void *)(q + 1) + 8 > data_end)
			return XDP_DROP;
		o->version = 4;
		o->ihl = 5;
		o->tos = 0;
		o->tot_len = bpf_htons(head + quote);
		o->id = 0;
		o->frag_off = 0;
		o->ttl = 64;
		o->protocol = IPPROTO_ICMP;
		o->check = 0;
		o->saddr = q->daddr;
		o->daddr = q->saddr;
		o->check = csum_fold(sum_words((const __u32 *)o, sizeof(*o) / 4));
		ic->type = 3; /* destination unreachable */
		ic->code = 4; /* fragmentation needed and DF set */
		ic->checksum = 0;
		ic->mtu = bpf_htonl(room & 0xffff); /* 16 bits unused, 16 of MTU */
		sum = sum_words((const __u32 *)ic, (8 + sizeof(*q) + 8) / 4);
		ic->checksum = csum_fold(sum);
	} else {
		struct ipv6hdr *o = (void *)eth + l2len, *q = (void *)o + head;
		struct xlb_icmp_mtu *ic = (void *)(o + 1);

		if ((void *)(q + 1) + 8 > data_end)
			return XDP_DROP;
		/* IPv6 links carry 1280 bytes at least: a smaller figure
		 * would not be believed. */
		if (room < 1280)
			room = 1280;
		*(__be32 *)o = bpf_htonl(0x60000000);
		o->payload_len = bpf_htons(8 + quote);
		o->nexthdr = IPPROTO_ICMPV6;
		o->hop_limit = 64;
		o->saddr = q->daddr;
		o->daddr = q->saddr;
		ic->type = 2; /* packet too big */
		ic->code = 0;
		ic->checksum = 0;
		ic->mtu = bpf_htonl(room);
		sum = sum_words((const __u32 *)&o->saddr, 8) + bpf_htonl(8 + quote) + bpf_htonl(IPPROTO_ICMPV6);
		sum += sum_words((const __u32 *)ic, (8 + sizeof(*q) + 8) / 4);
		ic->checksum = csum_fold(sum);
	}
	return XDP_TX;
}

/* tunnel encapsulates the frame for a tunnel backend and sends it. The
 * frame's link-layer header, tag included, is kept in front of the outer
 * header; only its MACs change. A hash of key spreads GUE source ports
 * and IPv6 flow labels. A packet the FIB cannot place passes to the kernel as it
 * came, with a counter. */
static __always_inline int tunnel(struct xdp_md *ctx, __u32 id, const struct backend *be,
				  const struct flow_key *key, __u32 now, int *answered)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct nexthop *nh = NULL;
	struct ethhdr *eth = data;
	int gue = be->flags & XLB_BE_F_TUN_GUE;
	int v4 = be->family == XLB_AF_INET;
	__u32 l2len, iplen, olen, inner_len, mtu = 0;
	__be16 sport = 0;
	__u32 hash = 0;
	__u8 proto, inner_proto;
	void *l3;
	long rc;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	/* The loader gives a backend only to its own service, whose family
	 * the tunnel has; a flow entry placed otherwise must not make the
	 * program read an IPv6 header as IPv4. */
	if (key->family != be->family) {
		count(XLB_CNT_TUN_NO_ROUTE);
		return XDP_PASS;
	}
	l2len = sizeof(*eth);
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD))
		l2len += sizeof(struct vlan_hdr);
	l3 = data + l2len;
	if (v4) {
		struct iphdr *in = l3;

		if ((void *)(in + 1) > data_end)
			return XDP_PASS;
		inner_len = bpf_ntohs(in->tot_len);
		iplen = sizeof(struct iphdr);
		inner_proto = IPPROTO_IPIP;
	} else {
		struct ipv6hdr *in = l3;

		if ((void *)(in + 1) > data_end)
			return XDP_PASS;
		inner_len = sizeof(*in) + bpf_ntohs(in->payload_len);
		iplen = sizeof(struct ipv6hdr);
		inner_proto = IPPROTO_IPV6;
	}
	olen = iplen;
	proto = inner_proto;
	if (gue || !v4)
		hash = spread_hash(key);
	if (gue) {
		olen += XLB_GUE_LEN;
		proto = IPPROTO_UDP;
		sport = bpf_htons(XLB_GUE_SPORT_MIN + (((__u64)hash * XLB_GUE_SPORT_SPAN) >> 32));
	}

	rc = tunnel_route(ctx, id, be, &nh, olen + inner_len, proto, sport, now, &mtu);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		break;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		count(XLB_CNT_TUN_NO_NEIGH);
		return XDP_PASS;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		if (mtu > olen && too_big(ctx, l2len, v4, mtu - olen) == XDP_TX) {
			count(XLB_CNT_TUN_TOO_BIG_SENT);
			*answered = 1;
			return XDP_TX;
		}
		count(XLB_CNT_TUN_TOO_BIG);
		return XDP_PASS;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		count(XLB_CNT_TUN_FWD_OFF);
		return XDP_PASS;
	default:
		count(XLB_CNT_TUN_NO_ROUTE);
		return XDP_PASS;
	}

	if (!nh) /* success always sets it: for the verifier */
		return XDP_PASS;
	/* The route may leave by another interface: one of xlb's, through
	 * tx_ports, as direct routing's two-arm frames do. */
	if (nh->ifindex != ctx->ingress_ifindex && !bpf_map_lookup_elem(&ifaces, &nh->ifindex)) {
		count(XLB_CNT_PASS_NO_TX_PORT);
		return XDP_PASS;
	}
	if (bpf_xdp_adjust_head(ctx, -(int)olen))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	/* The old link-layer header starts olen bytes in; olen (at least 20)
	 * exceeds its length (at most 18), so the copies do not overlap. */
	if (data + olen + l2len + iplen > data_end || l2len > sizeof(*eth) + sizeof(struct vlan_hdr))
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	eth->h_proto = ((struct ethhdr *)(data + olen))->h_proto;
	if (l2len > sizeof(*eth))
		*(struct vlan_hdr *)(eth + 1) = *(struct vlan_hdr *)(data + olen + sizeof(*eth));
	l3 = data + l2len;

	if (v4) {
		__u32 *o = l3, *in = l3 + olen, w0, w1, w2, src, dst;

		if ((void *)(in + 5) > data_end)
			return XDP_DROP;
		/* As IPVS builds it: the inner TOS, TTL and DF; the inner id,
		 * unique per source, rather than a counter of our own. Built a
		 * word at a time, the checksum summed from registers: the
		 * field-by-field version cost IPv4 tunnels a tenth more. */
		w0 = bpf_htonl(0x45000000 | (bpf_ntohl(in[0]) & 0x00ff0000) | (olen + inner_len));
		w1 = in[1] & bpf_htonl(0xffff0000 | XLB_IP_DF);
		w2 = (in[2] & bpf_htonl(0xff000000)) | bpf_htonl((__u32)proto << 16);
		__builtin_memcpy(&src, be->src, 4);
		__builtin_memcpy(&dst, be->addr, 4);
		o[0] = w0;
		o[1] = w1;
		o[3] = src;
		o[4] = dst;
		/* The folded sum is in memory order, like the words (bpfel):
		 * its two bytes are the high half of the third word. */
		o[2] = w2 | (__u32)csum_fold((__u64)w0 + w1 + w2 + src + dst) << 16;
	} else {
		struct ipv6hdr *o = l3, *in = l3 + olen;
		__u32 tc;

		if ((void *)(in + 1) > data_end)
			return XDP_DROP;
		/* The inner traffic class; a flow label from the flow hash
		 * (RFC 6438), so routers on the way spread tunnels by flow. */
		tc = bpf_ntohl(*(__be32 *)in) & 0x0ff00000;
		*(__be32 *)o = bpf_htonl(0x60000000 | tc | (hash & 0xfffff));
		/* Payload length, next header, hop limit: one word, in memory
		 * order (bpfel). */
		((__u32 *)o)[1] = bpf_htons(olen - sizeof(*o) + inner_len) | (__u32)proto << 16 |
				  (__u32)in->hop_limit << 24;
		__builtin_memcpy(&o->saddr, be->src, 16);
		__builtin_memcpy(&o->daddr, be->addr, 16);
	}

	if (gue) {
		struct udphdr *uh = l3 + iplen;
		struct guehdr *gh = (void *)(uh + 1);

		if ((void *)(gh + 1) > data_end)
			return XDP_DROP;
		/* A word at a time, in memory order (bpfel): source port then
		 * destination port; length then a zero checksum; GUE version 0,
		 * no options, then the inner protocol, no flags. */
		((__u32 *)uh)[0] = sport | (__u32)be->port << 16;
		((__u32 *)uh)[1] = bpf_htons(XLB_GUE_LEN + inner_len);
		*(__u32 *)gh = (__u32)inner_proto << 8;
		if (be->flags & XLB_BE_F_GUE_CSUM) {
			__u64 sum;
			int ok;

			sum = inner_sum((void *)(gh + 1), data_end, be->family, &ok);
			/* Zero where the inner sum is not known: UDP over IPv4
			 * allows it, and the kernel's fou accepts it over IPv6. */
			if (ok) {
				sum += sum_words((const __u32 *)uh, XLB_GUE_LEN / 4);
				sum += sum_words((const __u32 *)be->src, v4 ? 1 : 4);
				sum += sum_words((const __u32 *)be->addr, v4 ? 1 : 4);
				sum += v4 ? bpf_htons(IPPROTO_UDP) + uh->len
					  : bpf_htonl(IPPROTO_UDP) + bpf_htonl(XLB_GUE_LEN + inner_len);
				uh->check = csum_fold(sum) ?: 0xffff;
			}
		}
	}
	if (nh->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect_map(&tx_ports, nh->ifindex, 0);
}

/* vlan_ok reports whether a frame on VLAN vlan (0: untagged) may reach
 * service svc_id: a service limited to a VLAN takes only that VLAN's
 * frames, so a VIP shared by segments is served on one of them. */
static __always_inline int vlan_ok(__u32 svc_id, __u16 vlan)
{
	__u32 *want = bpf_map_lookup_elem(&svc_vlan, &svc_id);

	return !want || !*want || *want == vlan;
}

/* xlb_xmit sends the frame to dmac out of interface ifindex and returns
 * the verdict. Out of the interface it came in on (ifindex 0 or the
 * ingress one): XDP_TX, the frame's destination, this interface's own MAC
 * (for_this_host checked it), becoming its source. Out of another of
 * xlb's interfaces: XDP_REDIRECT through tx_ports, that interface's MAC
 * as the source; an interface deleted under the daemon has left tx_ports
 * (the kernel removes it) before ifaces, and its frames abort, which the
 * xdp:xdp_exception tracepoint shows. An interface xlb does not serve:
 * XDP_PASS, the frame untouched. Only the Ethernet addresses change, so
 * an 802.1Q tag leaves as it came. */
static __always_inline int xlb_xmit(struct xdp_md *ctx, __u32 ifindex, const __u8 *dmac)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct xlb_iface *out;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (!ifindex || ifindex == ctx->ingress_ifindex) {
		__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
		return XDP_TX;
	}
	out = bpf_map_lookup_elem(&ifaces, &ifindex);
	if (!out) {
		count(XLB_CNT_PASS_NO_TX_PORT);
		return XDP_PASS;
	}
	__builtin_memcpy(eth->h_source, out->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	return bpf_redirect_map(&tx_ports, ifindex, 0);
}

static __always_inline int xlb_process(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet p = {};
	struct flow4_key k4 = {};
	struct vip_meta *svc;
	struct backend *be;
	struct flow *f;
	__u32 id, now, svc_id;
	__u64 fresh = 0;
	int rc, young;

	rc = parse(data, data_end, &p);
	if (rc == XLB_PARSE_OK && !may_be_vip(&p)) {
		count(XLB_CNT_PASS_NOT_VIP);
		return XDP_PASS;
	}
	if (rc == XLB_PARSE_OK)
		rc = p.icmp || p.frag == XLB_FRAG_LATER ? relay_parse(data, data_end, &p)
							: parse_ports(data, data_end, &p);
	if (rc != XLB_PARSE_OK) {
		switch (rc) {
		case XLB_PARSE_NOT_IP:
			count(XLB_CNT_PASS_NOT_IP);
			break;
		case XLB_PARSE_FRAGMENT:
			count(XLB_CNT_PASS_FRAGMENT);
			break;
		case XLB_PARSE_NOT_L4:
			count(XLB_CNT_PASS_NOT_L4);
			break;
		case XLB_PARSE_FRAG_UNKNOWN:
			count(XLB_CNT_PASS_FRAG_NO_FIRST);
			break;
		case XLB_PARSE_ICMP_NO_FLOW:
			count(XLB_CNT_PASS_ICMP_NO_FLOW);
			break;
		default:
			count(XLB_CNT_PASS_MALFORMED);
		}
		return XDP_PASS;
	}

	if (!for_this_host(ctx, data, data_end)) {
		count(XLB_CNT_PASS_OTHER_HOST);
		return XDP_PASS;
	}
	if (p.frag == XLB_FRAG_FIRST)
		frag_record(&p);

	/* A known flow first: its entry names its service and backend, so
	 * most packets cost one hash lookup, not a services lookup too. */
	now = bpf_jiffies64() >> XLB_ATIME_SHIFT;
	flow4_of(&p.key, &k4);
	f = flow_lookup(&p, &k4, &young);
	if (p.icmp) {
		/* An ICMP error is no sign of life from the client (any host
		 * on the path may send one, or forge it), so it follows the
		 * flow as it stands: no entry is made, moved or refreshed. */
		if (f && !expired(f, now)) {
			id = f->backend;
			be = bpf_map_lookup_elem(&backends, &id);
			if (be && (be->flags & XLB_BE_F_PRESENT) && be->service == f->service) {
				svc_id = f->service;
				count(XLB_CNT_FLOW_ICMP_RELAYED);
				goto forward;
			}
		}
		count(XLB_CNT_PASS_ICMP_NO_FLOW);
		return XDP_PASS;
	}
	if (f && expired(f, now)) {
		/* IPVS would have dropped the connection by now: whatever
		 * comes on the tuple is a new flow, so a drained backend
		 * really drains. */
		count(XLB_CNT_FLOW_EXPIRED);
	} else if (f && !is_reuse(p.tcp_flags, f->state)) {
		id = f->backend;
		be = bpf_map_lookup_elem(&backends, &id);
		/* The backend must still be there and still be the entry's
		 * service's: an entry never leads to another service's
		 * backend, whatever became of its id. */
		if (be && (be->flags & XLB_BE_F_PRESENT) && be->service == f->service) {
			__u8 st = next_state(p.key.proto, p.tcp_flags, f->state);
			int tick = f->atime != now;

			svc_id = f->service;
			if (!vlan_ok(svc_id, p.vlan)) {
				count(XLB_CNT_PASS_VLAN);
				return XDP_PASS;
			}
			/* Write only on change: a store per packet would bounce
			 * the cache line between CPUs. */
			if (f->state != st)
				f->state = st;
			if (tick)
				f->atime = now;
			if (young && tick && lasted(f, now))
				promote(&p, &k4, f);
			goto forward;
		}
		count(XLB_CNT_FLOW_REHASH);
	}

	svc = service_of(&p.key);
	if (!svc) {
		count(XLB_CNT_PASS_NOT_VIP);
		return XDP_PASS;
	}
	if (!vlan_ok(svc->id, p.vlan)) {
		count(XLB_CNT_PASS_VLAN);
		return XDP_PASS;
	}

	id = pick(svc, &p.key);
	be = id ? bpf_map_lookup_elem(&backends, &id) : NULL;
	if (!be || !(be->flags & XLB_BE_F_PRESENT) || be->service != svc->id) {
		count(XLB_CNT_PASS_NO_BACKEND);
		return XDP_PASS;
	}
	svc_id = svc->id;
	{
		struct flow nf = {
			.backend = id,
			.atime = now,
			.ctime = now,
			.service = svc_id,
			.state = next_state(p.key.proto, p.tcp_flags, 0),
		};

		/* An entry that was not followed is rewritten where it is, in
		 * the flow table or in probation; a new flow starts in
		 * probation. */
		if (f)
			*f = nf;
		else
			probation_insert(&p, &k4, &nf);
	}
	count(XLB_CNT_FLOW_NEW);
	fresh = 1;

forward:
	if (be->flags & (XLB_BE_F_TUN_IPIP | XLB_BE_F_TUN_GUE)) {
		__u64 len = data_end - data;
		int answered = 0;

		rc = tunnel(ctx, id, be, &p.key, now, &answered);
		if (rc != XDP_PASS && !answered) {
			account(svc_id, len, fresh);
			account(XLB_MAX_SERVICES + id, len, fresh);
		}
		return rc;
	}
	rc = xlb_xmit(ctx, be->ifindex, be->mac);
	if (rc == XDP_PASS)
		return rc;
	account(svc_id, data_end - data, fresh);
	account(XLB_MAX_SERVICES + id, data_end - data, fresh);
	return rc;
}

SEC("xdp")
int xlb_xdp(struct xdp_md *ctx)
{
	return xlb_process(ctx);
}

/* xlb_now returns the program's clock as its verdict: jiffies in atime
 * units, exactly as flows are stamped (the low 32 bits of the shifted
 * 64-bit count, which differ from the shifted low 32 bits once jiffies
 * pass 2^32, five minutes after boot). BPF_PROG_TEST_RUN of it is how the
 * loader turns flow atimes into ages; it is never attached. */
SEC("xdp")
int xlb_now(struct xdp_md *ctx)
{
	return (__u32)(bpf_jiffies64() >> XLB_ATIME_SHIFT);
}

char __license[] SEC("license") = "Dual BSD/GPL";
