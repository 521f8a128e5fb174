/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bench_lookup: the irreducible work of any stateful balancer, for
 * `make bench` to compare xlb_xdp against: one hash lookup for the
 * service, one LRU lookup for the flow, one array lookup for the backend,
 * a MAC rewrite and XDP_TX. Keys have xlb's layouts: the services key is
 * dual-stack, the flow key the 16-byte IPv4 one. Its maps are its own and
 * not pinned; the benchmark fills them.
 *
 * A flow it does not know is inserted with backend 1 and forwarded: no
 * cost on the known path (a branch not taken), and through bench_wrapper
 * it gives the floor of a new flow, the flow-table insert alone. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "../lb_consts.h"
#include "../lb_structs.h"

/* Room for a whole benchmark round of new flows, so no insert evicts;
 * the benchmark empties the table between rounds. */
#define BENCH_LOOKUP_FLOWS (1 << 20)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
} bench_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BENCH_LOOKUP_FLOWS);
	__type(key, struct flow4_key);
	__type(value, struct flow);
} bench_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct backend);
} bench_backends SEC(".maps");

SEC("xdp")
int bench_lookup(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct vip_key vk = {};
	struct flow4_key fk = {};
	struct flow nf = { .backend = 1 };
	struct backend *be;
	struct tcphdr *th;
	struct flow *f;

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (iph->ihl < 5 || iph->protocol != IPPROTO_TCP)
		return XDP_PASS;
	th = (void *)iph + iph->ihl * 4;
	if ((void *)(th + 1) > data_end)
		return XDP_PASS;

	__builtin_memcpy(vk.addr, &iph->daddr, 4);
	vk.port = th->dest;
	vk.proto = IPPROTO_TCP;
	vk.family = XLB_AF_INET;
	if (!bpf_map_lookup_elem(&bench_services, &vk))
		return XDP_PASS;

	__builtin_memcpy(fk.src, &iph->saddr, 4);
	__builtin_memcpy(fk.dst, &iph->daddr, 4);
	fk.sport = th->source;
	fk.dport = th->dest;
	fk.proto = IPPROTO_TCP;
	f = bpf_map_lookup_elem(&bench_flows, &fk);
	if (!f) {
		if (bpf_map_update_elem(&bench_flows, &fk, &nf, BPF_ANY))
			return XDP_ABORTED;
		f = &nf;
	}
	be = bpf_map_lookup_elem(&bench_backends, &f->backend);
	if (!be)
		return XDP_PASS;

	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	return XDP_TX;
}

char __license[] SEC("license") = "Dual BSD/GPL";
