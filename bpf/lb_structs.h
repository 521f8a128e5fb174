/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Map keys and values. Their layout is ABI with internal/datapath (bpf2go
 * generates the Go types from this BTF) and with pinned maps. */
#ifndef XLB_STRUCTS_H
#define XLB_STRUCTS_H

#include <linux/types.h>

/* services key. IPv4 addresses use addr[0] only, the rest is zero. */
struct vip_key {
	__u32 addr[4];
	__be16 port;  /* 0 matches every port of the VIP */
	__u8 proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;  /* XLB_AF_INET or XLB_AF_INET6 */
};

/* services value. table and size change together in one map update, so a
 * packet never indexes a table with another table's size. */
struct vip_meta {
	__u32 id;     /* stats index */
	__u32 flags;  /* XLB_SVC_F_* */
	__u32 table;  /* slot in the maglev outer map */
	__u32 size;   /* entries in that table (a prime) */
};

struct backend {
	__u8 mac[6];
	__u16 flags; /* XLB_BE_F_* */
};

/* flows key; also the input of the Maglev hash (see xlb_flow_hash). */
struct flow_key {
	__u32 src[4];
	__u32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct flow {
	__u32 backend; /* backend id */
	__u32 atime;   /* last seen, seconds of the coarse monotonic clock */
	__u8 state;    /* XLB_FLOW_* */
	__u8 pad[3];
};

/* stats value: per service (index = service id) and per backend
 * (index = XLB_MAX_SERVICES + backend id). */
struct lb_stats {
	__u64 packets;
	__u64 bytes;
	__u64 flows; /* new flows (inserted into the flow table) */
};

/* Set at load time through .rodata: the program is loaded per interface. */
struct xlb_config {
	__u8 mac[6]; /* source MAC of forwarded frames; zero = keep the frame's destination MAC */
	__u16 pad;
};

#endif
