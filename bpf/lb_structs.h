/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Map keys and values. Their layout is ABI with internal/datapath (bpf2go
 * generates the Go types from this BTF) and with pinned maps. */
#ifndef XLB_STRUCTS_H
#define XLB_STRUCTS_H

#include <linux/types.h>
#include "lb_consts.h"

/* Addresses are bytes in network order, so `bpftool map dump` prints
 * 192.0.2.10 as [192,0,2,10,...]; IPv4 uses the first 4 bytes, the rest is
 * zero. Word alignment lets the hash read them as __u32. */
#define XLB_ADDR(name) __u8 name[16] __attribute__((aligned(4)))

/* services key. */
struct vip_key {
	XLB_ADDR(addr);
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

/* backends value. service is the id of the one service the backend id
 * was given out for: a flow entry is followed only to a backend of its own
 * service, whatever became of the id since. A direct-routing backend is a
 * MAC on a segment the balancer is on; a tunnel backend is an address,
 * reached through the FIB (XLB_BE_F_TUN_*). */
struct backend {
	__u8 mac[6];     /* DR: the real server's */
	__u16 flags;     /* XLB_BE_F_* */
	__u32 service;   /* vip_meta.id */
	XLB_ADDR(addr);  /* TUN: outer destination, the real server's address */
	XLB_ADDR(src);   /* TUN: outer source, the balancer's address toward it */
	__u32 ifindex;   /* DR: the interface the real server is on; 0 = the one the frame came in on */
	__be16 port;     /* GUE: outer UDP destination port */
	__u8 family;     /* TUN: XLB_AF_* of addr and src, the same as the service's */
	__u8 gen;        /* TUN: changes with every write, never 0: see struct nexthop */
};

/* flows4 and probation4 key: the IPv4 5-tuple in 16 bytes, all the kernel hashes and
 * compares on each lookup (a struct flow_key is 40). */
struct flow4_key {
	__u8 src[4] __attribute__((aligned(4)));
	__u8 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* flows6 and probation6 key; also, for both families, the input of the Maglev hash (see
 * xlb_flow_hash), so that the choice of backend does not depend on the
 * table the flow is kept in. */
struct flow_key {
	XLB_ADDR(src);
	XLB_ADDR(dst);
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

/* frags key: a datagram as its receiver reassembles it (RFC 791's
 * source, destination, protocol and identification; RFC 8200's source,
 * destination and identification). */
struct frag_key {
	XLB_ADDR(src);
	XLB_ADDR(dst);
	__u32 id;     /* as on the wire; IPv4's 16 bits in the first two bytes */
	__u8 proto;
	__u8 family;
	__u16 pad;
};

/* frags value: what the first fragment had and the later ones lack. */
struct frag_ports {
	__be16 sport;
	__be16 dport;
	__u8 tcp_flags; /* so that a later fragment moves the flow's state as its first did */
	__u8 pad[3];
};

/* The flow table's value. An entry idle longer than its state's timeout
 * (the settings global of lb.c) is not followed: the flow is scheduled
 * afresh, as IPVS expires a connection. */
struct flow {
	__u32 backend; /* backend id */
	__u32 atime;   /* last seen: jiffies >> XLB_ATIME_SHIFT */
	__u32 ctime;   /* first seen, same clock: promotion needs an age */
	__u16 service; /* vip_meta.id of the service that placed it */
	__u8 state;    /* XLB_FLOW_* */
	__u8 pad;
};

/* backend_ids key: which real server of which service a backend id stands
 * for. The program never reads it; it is the daemon's record, pinned beside
 * the flow table whose entries hold the ids, so that a restarted daemon
 * gives every real server the id its flows carry. The all-zero key (family
 * 0, no service has it) holds the next id to hand out instead. */
struct backend_ref {
	struct vip_key service;
	XLB_ADDR(addr);
	__be16 port;
	__u8 family;
	__u8 pad;
};

/* nexthops value: a tunnel backend's last FIB answer, kept for one atime
 * unit so that a busy tunnel asks the FIB a few times a second rather
 * than once per packet. Several CPUs may rewrite one entry in the same
 * unit: they write the same answer. An answer holds only for the backend
 * value it was asked for (gen): a packet that read the value before the
 * loader changed it may still store an answer for the old one. */
struct nexthop {
	__u32 stamp;   /* atime unit of the answer */
	__u32 ifindex; /* egress interface */
	__u8 smac[6];
	__u8 dmac[6];
	__u16 mtu;     /* the route's */
	__u8 gen;      /* backend.gen asked for; 0: none */
	__u8 pad;
};

/* stats value: per service (index = service id) and per backend
 * (index = XLB_MAX_SERVICES + backend id). */
struct lb_stats {
	__u64 packets;
	__u64 bytes;
	__u64 flows; /* new flows (inserted into the flow table) */
};

/* Written by the loader at any time (.bss, mmapped), in atime units:
 * IPVS's per-state timeouts (an entry is expired once
 * now - atime > timeout[state]), and how long a flow must have lasted
 * (now - ctime >= promote) to move from probation to the flow table. */
struct xlb_settings {
	__u32 timeout[XLB_FLOW_STATES];
	__u32 promote;
};

/* ifaces value: what the program writes into a frame it sends out of
 * another interface than it came in on. */
struct xlb_iface {
	__u8 mac[6]; /* the interface's own: the frame's new source */
	__u16 pad;
};

/* Set at load time through .rodata: the program is loaded per interface. */
struct xlb_config {
	__u8 mac[6]; /* the interface's: only frames to it are forwarded; zero = any */
	__u16 pad;
};

#endif
