#!/usr/bin/env bash
# topology.sh builds the xlb test network out of network namespaces, leaving
# the root namespace untouched:
#
#   client .10   lb1 .2   lb2 .3   rs1 .11   rs2 .12   rs3 .13
#      │eth0       │eth0    │eth0     │eth0      │eth0      │eth0
#   ───┴───────────┴────────┴─────────┴──────────┴──────────┴─── br0 (namespace br)
#
# Hosts sit on 198.51.100.0/24 and 2001:db8:100::/64. The VIP 192.0.2.10
# (2001:db8:200::10) is on-link for the client, so the client ARPs for it on
# the bridge and whichever LB holds it answers: the layer-2 DSR setup. Real
# servers carry the VIP on lo (realserver.sh).
#
# With --router, a router sits between the client and the balancers, as in
# a layer-3 (BGP) site, and a third balancer joins:
#
#   client eth1 203.0.113.10/25 ── eth1 203.0.113.1  rtr  eth0 198.51.100.1 ── br0
#                                                        lb3 .4 ── br0
#
# The client then reaches the VIPs through rtr (its on-link VIP routes
# point there), rtr forwards with IPv4 and IPv6 forwarding on, L4 hashing
# for multipath routes (fib_multipath_hash_policy=1) and no redirects, and
# the real servers send their replies to 203.0.113.0/25 (2001:db8:300::/64)
# back through it. Routes to the VIPs on rtr are the routing daemon's to
# install: the tests run BIRD there, its config and sockets in temp dirs.
#
# With --tunnel, a tunnel (TUN) real server sits one router hop away from
# the balancers, on a segment of its own behind rtr (which joins br0 as .1
# if --router did not already put it there):
#
#   br0 ── eth0 198.51.100.1  rtr  eth2 203.0.113.129 ── eth0 203.0.113.140  rs4
#                                       2001:db8:400::1        2001:db8:400::140
#
# The balancers forward (bpf_fib_lookup needs it) and route 203.0.113.128/25
# and 2001:db8:400::/64 through rtr; rs4's default route is rtr, so it
# answers clients on br0 or behind rtr directly, with a smaller advertised
# MSS that leaves room for the outer header. realserver.sh prepares it for
# IPIP and GUE on UDP port 6080 (keepalived's `lvs_method TUN type ipip`
# and `type gue port 6080`), with the kernel's ipip, ip6tnl and fou, or
# the XDP program DECAP_OBJ names where the kernel has none of them.
#
#
# With --arm2, lb1 gets a second arm: its eth1 is the only link of a
# fourth real server on a segment of its own (a two-arm balancer, xlb run
# -i eth0,eth1):
#
#   lb1 eth1 203.0.113.130/25 2001:db8:400::2 ── eth0 rs4 203.0.113.142/25 2001:db8:400::14
#
# lb1 routes rs4's replies to the client (forwarding on; accept_local on
# eth1, since they come from the VIP, which lb1 holds too).
#
#
# --tunnel and --arm2 both add rs4, so they exclude each other.
#
# Usage: topology.sh up [--vip-on lb1|lb2] [--router] [--tunnel | --arm2] | down | status
#
# Environment:
#   XLB_PREFIX    prefix of every namespace name (default "xlb-"), so tests
#                 can build isolated copies side by side.
#   XDP_PASS_OBJ  BPF object whose "xdp" section is attached in native mode to
#                 the bridge-side ports of lb1 and lb2: native XDP_TX on a veth
#                 delivers nothing unless the peer also runs an XDP program.
#                 A port that already has an XDP program keeps it. With
#                 --arm2, rs4's eth0 (the peer of lb1's eth1) gets it too.
#   DECAP_OBJ     with --tunnel, realserver.sh's --decap-obj for rs4: an XDP
#                 program that decapsulates, for kernels without ipip/fou.
#
# Every step checks or replaces rather than adds, so `up` can be re-run after
# a failure and `down` removes whatever part exists.
set -euo pipefail

PREFIX=${XLB_PREFIX:-xlb-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

HOSTS=(client lb1 lb2 rs1 rs2 rs3)
# Every host a topology may have: what down removes.
ALL_HOSTS=(client lb1 lb2 lb3 rtr rs1 rs2 rs3 rs4)
BR=${PREFIX}br
NET4=198.51.100
NET6=2001:db8:100
VIP4=192.0.2.10
VIP6=2001:db8:200::10
# The tunnel server's segment behind rtr (--tunnel), and the UDP port its
# GUE listener takes.
TUN4=203.0.113.128/25
TUN6=2001:db8:400::/64
RS4_4=203.0.113.140
RS4_6=2001:db8:400::140
GUE_PORT=6080

# hostnum is the host's address number. The MAC's last byte spells the same
# digits (rs1 = .11 = 02:00:00:00:00:11) so a test reading a MAC can tell
# whose it is; bridge-side ports use 02:00:00:00:01:NN.
hostnum() {
	case $1 in
	client) echo 10 ;;
	lb1) echo 2 ;;
	lb2) echo 3 ;;
	lb3) echo 4 ;;
	rtr) echo 1 ;;
	rs1) echo 11 ;;
	rs2) echo 12 ;;
	rs3) echo 13 ;;
	rs4) echo 14 ;;
	*) echo "unknown host $1" >&2; return 1 ;;
	esac
}
hostmac() { printf '02:00:00:00:%s:%02d' "${2:-00}" "$(hostnum "$1")"; }

die() { echo "topology.sh: $*" >&2; exit 1; }
ns_exists() { [ -e "/run/netns/$1" ]; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
sysctl_ns() { local ns=$1; shift; local kv; for kv in "$@"; do nsx "$ns" sysctl -qw "$kv" >/dev/null; done; }

# lock serialises runs for one prefix: two tests racing on the same names
# would otherwise interleave adds and deletes.
lock() {
	mkdir -p /run/lock
	exec 9>"/run/lock/xlb-topology-${PREFIX}.lock"
	flock -w 60 9 || die "timed out waiting for the lock of prefix ${PREFIX}"
}

add_ns() {
	local ns=$1
	ns_exists "$ns" || ip netns add "$ns"
	ip -n "$ns" link set lo up
	# Set before any interface is created here: a new device copies the
	# namespace defaults. No DAD keeps link-local addresses usable at once.
	sysctl_ns "$ns" net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
}

host_up() {
	local h=$1 ns=${PREFIX}$1 n
	n=$(hostnum "$h")
	add_ns "$ns"
	sysctl_ns "$ns" net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
	# Created in the br namespace with its peer born inside the host
	# namespace, so no name ever appears in the root namespace.
	if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
		ip -n "$BR" link del "$h" >/dev/null 2>&1 || true
		ip -n "$BR" link add "$h" type veth peer name eth0 netns "$ns"
	fi
	ip -n "$BR" link set "$h" address "$(hostmac "$h" 01)" master br0 up
	ip -n "$ns" link set eth0 address "$(hostmac "$h")" up
	sysctl_ns "$ns" net.ipv4.conf.eth0.rp_filter=0
	# Native XDP_TX on veth otherwise forwards partial checksums (see
	# docs/design.md, Known ground).
	nsx "$ns" ethtool -K eth0 tx off >/dev/null
	ip -n "$ns" addr replace "$NET4.$n/24" dev eth0
	ip -n "$ns" -6 addr replace "$NET6::$n/64" dev eth0 nodad
}

up() {
	local vip_on="" router="" tunnel="" arm2=""
	while [ $# -gt 0 ]; do
		case $1 in
		--router) router=1; shift ;;
		--tunnel) tunnel=1; shift ;;
		--arm2) arm2=1; shift ;;
		--vip-on) [ $# -ge 2 ] || die "--vip-on needs a host"; vip_on=$2; shift 2 ;;
		--vip-on=*) vip_on=${1#*=}; shift ;;
		*) die "up: unknown argument $1" ;;
		esac
	done
	case $vip_on in "" | lb1 | lb2) ;; *) die "--vip-on: $vip_on is not an LB (lb1, lb2)" ;; esac
	[ -n "$tunnel" ] && [ -n "$arm2" ] && die "--tunnel and --arm2 both add rs4: use one"
	if [ -n "${XDP_PASS_OBJ:-}" ] && [ ! -r "$XDP_PASS_OBJ" ]; then
		die "XDP_PASS_OBJ $XDP_PASS_OBJ is not readable"
	fi
	if [ -n "${DECAP_OBJ:-}" ] && [ ! -r "$DECAP_OBJ" ]; then
		die "DECAP_OBJ $DECAP_OBJ is not readable"
	fi
	lock

	add_ns "$BR"
	# The bridge carries no address; IPv6 off keeps its ports from sending
	# router solicitations and MLD into the test traffic.
	sysctl_ns "$BR" net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1
	ip -n "$BR" link show br0 >/dev/null 2>&1 || ip -n "$BR" link add br0 type bridge
	# A dumb switch: no STP delay, no multicast snooping between VRRP peers.
	ip -n "$BR" link set br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
	# A fixed address: a bridge otherwise takes its lowest port's, which
	# moves as ports come and go.
	ip -n "$BR" link set br0 address 02:00:00:00:01:00 up

	local h lbs=(lb1 lb2)
	[ -n "$router" ] && HOSTS+=(lb3 rtr) && lbs+=(lb3)
	[ -n "$tunnel" ] && [ -z "$router" ] && HOSTS+=(rtr)
	for h in "${HOSTS[@]}"; do host_up "$h"; done

	# The VIP is on-link for the client, as it is for clients that share the
	# VIP's subnet: they ARP for it and the LB answers.
	ip -n "${PREFIX}client" route replace 192.0.2.0/24 dev eth0
	ip -n "${PREFIX}client" -6 route replace 2001:db8:200::/64 dev eth0

	for h in rs1 rs2 rs3; do "$HERE/realserver.sh" "${PREFIX}$h" "$VIP4" "$VIP6"; done
	[ -n "$router" ] && router_up
	[ -n "$tunnel" ] && tunnel_up "${lbs[@]}"
	[ -n "$arm2" ] && arm2_up

	if [ -n "$vip_on" ]; then
		ip -n "${PREFIX}$vip_on" addr replace "$VIP4/32" dev eth0
		ip -n "${PREFIX}$vip_on" -6 addr replace "$VIP6/128" dev eth0 nodad
	fi

	if [ -n "${XDP_PASS_OBJ:-}" ]; then
		for h in "${lbs[@]}"; do
			# Any XDP program on the port meets the need; keeping one
			# that is there makes a re-run change nothing.
			ip -n "$BR" link show dev "$h" | grep -q 'prog/xdp' ||
				ip -n "$BR" link set dev "$h" xdpdrv obj "$XDP_PASS_OBJ" sec xdp
		done
	fi
}

# arm2_up gives lb1 its second arm, to rs4 (see the header).
arm2_up() {
	local l=${PREFIX}lb1 r=${PREFIX}rs4
	add_ns "$r"
	sysctl_ns "$r" net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
	if ! ip -n "$r" link show eth0 >/dev/null 2>&1; then
		ip -n "$l" link del eth1 >/dev/null 2>&1 || true
		ip -n "$l" link add eth1 type veth peer name eth0 netns "$r"
	fi
	ip -n "$l" link set eth1 address "$(hostmac lb1 02)" up
	ip -n "$r" link set eth0 address "$(hostmac rs4)" up
	sysctl_ns "$l" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
		net.ipv4.conf.eth1.rp_filter=0 net.ipv4.conf.all.accept_local=1 net.ipv4.conf.eth1.accept_local=1
	sysctl_ns "$r" net.ipv4.conf.eth0.rp_filter=0
	nsx "$r" ethtool -K eth0 tx off >/dev/null
	ip -n "$l" addr replace 203.0.113.130/25 dev eth1
	ip -n "$l" -6 addr replace 2001:db8:400::2/64 dev eth1 nodad
	ip -n "$r" addr replace 203.0.113.142/25 dev eth0
	ip -n "$r" -6 addr replace 2001:db8:400::14/64 dev eth0 nodad
	ip -n "$r" route replace default via 203.0.113.130
	ip -n "$r" -6 route replace default via 2001:db8:400::2
	"$HERE/realserver.sh" "$r" "$VIP4" "$VIP6"
	if [ -n "${XDP_PASS_OBJ:-}" ]; then
		ip -n "$r" link show dev eth0 | grep -q 'prog/xdp' ||
			ip -n "$r" link set dev eth0 xdpdrv obj "$XDP_PASS_OBJ" sec xdp
	fi
}

# forwarding makes rtr a router that sends no redirects: a redirect would
# teach hosts on br0 a shortcut the tests do not expect.
forwarding() {
	sysctl_ns "${PREFIX}rtr" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
		net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1 \
		net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
}

# router_up puts rtr between the client and the bridge (see the header).
router_up() {
	local c=${PREFIX}client r=${PREFIX}rtr
	forwarding
	if ! ip -n "$c" link show eth1 >/dev/null 2>&1; then
		ip -n "$r" link del eth1 >/dev/null 2>&1 || true
		ip -n "$r" link add eth1 type veth peer name eth1 netns "$c"
	fi
	ip -n "$r" link set eth1 up
	ip -n "$c" link set eth1 up
	sysctl_ns "$r" net.ipv4.conf.eth1.rp_filter=0
	nsx "$c" ethtool -K eth1 tx off >/dev/null
	# A /25: the upper half is the tunnel server's segment (--tunnel).
	ip -n "$r" addr replace 203.0.113.1/25 dev eth1
	ip -n "$r" -6 addr replace 2001:db8:300::1/64 dev eth1 nodad
	ip -n "$c" addr replace 203.0.113.10/25 dev eth1
	ip -n "$c" -6 addr replace 2001:db8:300::10/64 dev eth1 nodad
	ip -n "$c" route replace 192.0.2.0/24 via 203.0.113.1 dev eth1 src 203.0.113.10
	ip -n "$c" -6 route replace 2001:db8:200::/64 via 2001:db8:300::1 dev eth1 src 2001:db8:300::10
	local h
	for h in rs1 rs2 rs3; do
		ip -n "${PREFIX}$h" route replace 203.0.113.0/24 via "$NET4.1"
		ip -n "${PREFIX}$h" -6 route replace 2001:db8:300::/64 via "$NET6::1"
	done
}

# tunnel_up puts rs4 on its own segment behind rtr (see the header); its
# arguments are the balancers, which get routes to that segment.
tunnel_up() {
	local r=${PREFIX}rtr s=${PREFIX}rs4 h n
	forwarding
	add_ns "$s"
	sysctl_ns "$s" net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
	if ! ip -n "$s" link show eth0 >/dev/null 2>&1; then
		ip -n "$r" link del eth2 >/dev/null 2>&1 || true
		ip -n "$r" link add eth2 type veth peer name eth0 netns "$s"
	fi
	ip -n "$r" link set eth2 address "$(hostmac rtr 02)" up
	ip -n "$s" link set eth0 address "$(hostmac rs4)" up
	sysctl_ns "$r" net.ipv4.conf.eth2.rp_filter=0 net.ipv4.conf.eth2.send_redirects=0
	ip -n "$r" addr replace 203.0.113.129/25 dev eth2
	ip -n "$r" -6 addr replace 2001:db8:400::1/64 dev eth2 nodad
	ip -n "$s" addr replace "$RS4_4/25" dev eth0
	ip -n "$s" -6 addr replace "$RS4_6/64" dev eth0 nodad
	# advmss: a client's full segment plus the outer header (up to 32
	# bytes for GUE over IPv4, 52 over IPv6) must fit 1500 bytes on the
	# way from a balancer to here.
	ip -n "$s" route replace default via 203.0.113.129 dev eth0 advmss 1400
	ip -n "$s" -6 route replace default via 2001:db8:400::1 dev eth0 advmss 1380
	# With the balancer's own address as source: by IPv6's rules the VIP
	# on eth0 would otherwise win, and rs4 cannot answer the VIP.
	# Forwarding on: the balancers route the outer packets with
	# bpf_fib_lookup, which answers only for an interface that forwards.
	# No redirects: packets their programs pass are not theirs to correct.
	for h in "$@"; do
		sysctl_ns "${PREFIX}$h" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
			net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
		n=$(hostnum "$h")
		ip -n "${PREFIX}$h" route replace "$TUN4" via "$NET4.1" src "$NET4.$n"
		ip -n "${PREFIX}$h" -6 route replace "$TUN6" via "$NET6::1" src "$NET6::$n"
	done
	"$HERE/realserver.sh" --tunnel "gue:$GUE_PORT" ${DECAP_OBJ:+--decap-obj "$DECAP_OBJ"} "$s" "$VIP4" "$VIP6"
}

down() {
	lock
	local h ns pids
	for h in "${ALL_HOSTS[@]}" br; do
		ns=${PREFIX}$h
		ns_exists "$ns" || continue
		# A namespace with processes in it outlives `ip netns del`.
		pids=$(ip netns pids "$ns" || true)
		if [ -n "$pids" ]; then
			# shellcheck disable=SC2086
			kill $pids 2>/dev/null || true
			for _ in 1 2 3 4 5 6 7 8 9 10; do
				pids=$(ip netns pids "$ns" || true)
				[ -z "$pids" ] && break
				sleep 0.2
			done
			# shellcheck disable=SC2086
			[ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
		fi
	done
	for h in "${ALL_HOSTS[@]}" br; do
		ns=${PREFIX}$h
		ns_exists "$ns" || continue
		ip netns del "$ns"
	done
	rm -f "/run/lock/xlb-topology-${PREFIX}.lock"
}

status() {
	local h ns missing=0
	for h in br "${HOSTS[@]}"; do
		ns=${PREFIX}$h
		if ! ns_exists "$ns"; then
			echo "$ns: missing"
			missing=1
			continue
		fi
		if [ "$h" = br ]; then
			echo "$ns: $(ip -n "$ns" -br link show master br0 2>/dev/null | awk '{print $1}' | cut -d@ -f1 | tr '\n' ' ')"
		else
			echo "$ns: $(ip -n "$ns" -br addr show dev eth0 2>/dev/null | awk '{$2=""; print}' | tr -s ' ')"
		fi
	done
	return "$missing"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
[ "$(id -u)" = 0 ] || die "needs root (creates network namespaces)"
case $cmd in
up) up "$@" ;;
down) down ;;
status) status ;;
*) echo "usage: $0 up [--vip-on lb1|lb2] [--router] [--tunnel | --arm2] | down | status" >&2; exit 2 ;;
esac
