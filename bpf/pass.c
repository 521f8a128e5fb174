/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xdp_pass hands every frame to the kernel. Native XDP_TX on a veth only
 * delivers when the peer end has an XDP program too (docs/design.md, Known
 * ground), so the namespace topology attaches this one to the bridge-side
 * ends of the balancers' veths. It has no maps, so iproute2 can load it:
 * `ip link set dev PORT xdpdrv obj xdppass_bpfel.o sec xdp`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";
