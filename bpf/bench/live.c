/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The live-frames benchmark's programs. bench_gen runs under
 * BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES and sends every frame it
 * is given out of the generator's veth (XDP_TX); the receiver across the
 * pair, bench_macswap or xlb_xdp, sends it back; bench_sink, attached to
 * the generator's veth, counts what comes back and drops it. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* The generator's addresses, set before load. */
const volatile __u8 gen_dst[ETH_ALEN] = {};
const volatile __u8 gen_src[ETH_ALEN] = {};

/* How many flows the generator cycles through, one source port each; set
 * between runs. 0: a new flow every frame, from 198.18.0.0/15 (one /16
 * per CPU, so two generators never send the same tuple). */
__u32 gen_flows = 1;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

/* bench_gen writes the Ethernet header and the UDP source port of every
 * frame: live frames come from a page pool that recycles pages without
 * reinitialising them, so a frame the receiver rewrote (and bounced back)
 * would otherwise go out again as the receiver left it. */
SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *uh = (void *)(iph + 1);
	__u32 zero = 0, *seq, flows = gen_flows;

	if ((void *)(uh + 1) > data_end)
		return XDP_ABORTED;
	seq = bpf_map_lookup_elem(&gen_seq, &zero);
	if (!seq)
		return XDP_ABORTED;
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = gen_dst[i];
		eth->h_source[i] = gen_src[i];
	}
	eth->h_proto = bpf_htons(ETH_P_IP);
	*seq += 1;
	if (!flows) {
		__u32 cpu = bpf_get_smp_processor_id() & 1;

		iph->saddr = bpf_htonl(0xC6120000 | cpu << 16 | (*seq >> 16 & 0xffff));
		uh->source = bpf_htons(*seq & 0xffff);
		return XDP_TX;
	}
	uh->source = bpf_htons(10000 + *seq % flows);
	return XDP_TX;
}

/* bench_macswap is the floor of any forwarder: swap the MACs, send back. */
SEC("xdp")
int bench_macswap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

/* bench_sink counts the frames the receiver sent back, and drops them. */
SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&sink_count, &zero);

	if (n)
		*n += 1;
	return XDP_DROP;
}

char __license[] SEC("license") = "Dual BSD/GPL";
