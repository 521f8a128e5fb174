/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bench_bare: the floor of any XDP forwarder, for `make bench` to compare
 * xlb_xdp against. It parses Ethernet, IPv4 and TCP, compares one VIP and
 * bounces the frame with rewritten MACs; no map is touched. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the benchmark before load, so the compare is not folded away. */
const volatile __be32 bare_vip = 0;
const volatile __u8 bare_backend_mac[ETH_ALEN] = {};

SEC("xdp")
int bench_bare(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct tcphdr *th;

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (iph->ihl < 5 || iph->protocol != IPPROTO_TCP)
		return XDP_PASS;
	th = (void *)iph + iph->ihl * 4;
	if ((void *)(th + 1) > data_end)
		return XDP_PASS;
	if (iph->daddr != bare_vip)
		return XDP_PASS;

	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		eth->h_dest[i] = bare_backend_mac[i];
	return XDP_TX;
}

char __license[] SEC("license") = "Dual BSD/GPL";
