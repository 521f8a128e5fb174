/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xlb_xdp: direct-routing load balancing. A frame for a VIP service gets
 * the backend's MAC as destination and goes back out of the interface it
 * came in on; IP and L4 bytes stay as they are, so the real server sees
 * the client's address and answers it directly. Everything else passes to
 * the kernel untouched. */
#include "jhash.h"
#include "lb_maps.h"
#include "parse.h"

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
 * balancer would forward it a second time. */
static __always_inline int for_this_host(void *data, void *data_end)
{
	/* Byte by byte: a memcpy from the volatile config would let clang
	 * fold in the zero initialiser that the loader rewrites. */
	struct ethhdr *eth = data;
	__u8 any = 0, diff = 0;

	if ((void *)(eth + 1) > data_end)
		return 0;
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		__u8 m = xlb_cfg.mac[i];

		any |= m;
		diff |= m ^ eth->h_dest[i];
	}
	return !any || !diff;
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
		rc = parse_ports(data, data_end, &p);
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
		default:
			count(XLB_CNT_PASS_MALFORMED);
		}
		return XDP_PASS;
	}

	if (!for_this_host(data, data_end)) {
		count(XLB_CNT_PASS_OTHER_HOST);
		return XDP_PASS;
	}

	/* A known flow first: its entry names its service and backend, so
	 * most packets cost one hash lookup, not a services lookup too. */
	now = bpf_jiffies64() >> XLB_ATIME_SHIFT;
	flow4_of(&p.key, &k4);
	f = flow_lookup(&p, &k4, &young);
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
