#!/usr/bin/env bash
# demo-bgp.sh shows three balancers sharing one VIP behind a router's ECMP:
# it builds the namespace topology with a router (scripts/topology.sh up
# --router: client -> rtr -> lb1, lb2, lb3 -> rs1..rs3), runs BIRD 2 in rtr
# (its config, socket and pid under a temp dir) and `xlb run` in each
# balancer on examples/keepalived.conf extended with a bgp section, shows
# the router's three-way ECMP route and `xlb bgp`, sends requests from the
# client, shows that every balancer forwarded some, then drains lb1
# (`xlb drain-bgp`) and shows the route shrink. Everything is torn down on
# exit, Ctrl-C or failure. Run it as root: `sudo make demo-bgp`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=demo-lib.sh
. "$ROOT/scripts/demo-lib.sh"
export XLB_PREFIX=${XLB_PREFIX:-xlbbgp-}
export XDP_PASS_OBJ="$ROOT/internal/datapath/xdppass_bpfel.o"
P=$XLB_PREFIX
VIP=192.0.2.10
REQUESTS=${REQUESTS:-30}
WORK=$(mktemp -d /tmp/xlb-demo-bgp.XXXXXX)
XLB=$ROOT/bin/xlb
RSSERVER=$WORK/rsserver
LBS=(lb1 lb2 lb3)
declare -A NUM=([lb1]=2 [lb2]=3 [lb3]=4)
PIDS=()

[ "$(id -u)" = 0 ] || { echo "demo-bgp.sh: run as root (sudo make demo-bgp)" >&2; exit 1; }
command -v bird >/dev/null || { echo "demo-bgp.sh: needs bird (apt-get install bird2; make deps does)" >&2; exit 1; }

cleanup() {
	set +e
	# xlb stop removes each balancer's data path; SIGTERM alone would
	# leave it pinned (restart-safe), which a demo must not.
	for lb in "${LBS[@]}"; do
		[ -S "$WORK/$lb/xlb.sock" ] && "$XLB" stop --socket "$WORK/$lb/xlb.sock" >/dev/null 2>&1
	done
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	"$ROOT/scripts/topology.sh" down >/dev/null 2>&1
	rm -rf "$WORK" /sys/fs/bpf/xlb-demo-bgp-lb*
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_demo

step "topology: client -> rtr (ECMP, L4 hash) -> lb1, lb2, lb3 -> rs1..rs3"
"$ROOT/scripts/topology.sh" down >/dev/null 2>&1 || true
"$ROOT/scripts/topology.sh" up --router

step "real servers: HTTP on :80 answering 'NAME CLIENT-ADDRESS'"
for rs in rs1 rs2 rs3; do
	ip netns exec "${P}$rs" "$RSSERVER" -name "$rs" -http :80 >"$WORK/$rs.log" 2>&1 &
	PIDS+=($!)
done

step "BIRD 2 in rtr: AS 65000, eBGP to each balancer, merge paths into the kernel, GRACEFUL_SHUTDOWN -> local-pref 0"
cat >"$WORK/bird.conf" <<CONF
router id 198.51.100.1;
protocol device {}
protocol kernel kern4 { ipv4 { import none; export all; }; merge paths on; }
filter from_balancers { if (65535, 0) ~ bgp_community then bgp_local_pref = 0; accept; }
template bgp balancer {
	local as 65000; passive on; hold time 9; keepalive time 3; error wait time 1, 5;
	ipv4 { import filter from_balancers; export none; };
}
CONF
for lb in "${LBS[@]}"; do
	echo "protocol bgp bal_$lb from balancer { neighbor 198.51.100.${NUM[$lb]} as 65001; }" >>"$WORK/bird.conf"
done
ip netns exec "${P}rtr" bird -f -c "$WORK/bird.conf" -s "$WORK/bird.ctl" -P "$WORK/bird.pid" >"$WORK/bird.log" 2>&1 &
PIDS+=($!)

for lb in "${LBS[@]}"; do
	step "xlb run in $lb: examples/keepalived.conf plus a bgp section (AS 65001, router id 198.51.100.${NUM[$lb]})"
	sed -e "s|^extends: .*|extends: $ROOT/examples/keepalived.conf|" \
		-e "s|router_id: .*|router_id: 198.51.100.${NUM[$lb]}|" "$ROOT/examples/bgp.yaml" >"$WORK/$lb.yaml"
	mkdir -p "$WORK/$lb"
	nsenter --net="/run/netns/${P}$lb" "$XLB" run -f "$WORK/$lb.yaml" -i eth0 --xdp-mode native \
		--bpffs "/sys/fs/bpf/xlb-demo-bgp-$lb" --socket "$WORK/$lb/xlb.sock" >"$WORK/$lb.log" 2>&1 &
	PIDS+=($!)
done

step "waiting for the router's ECMP route to $VIP"
for _ in $(seq 300); do
	[ "$(ip -n "${P}rtr" route show "$VIP/32" | grep -c nexthop)" = 3 ] && break
	sleep 0.1
done
ip -n "${P}rtr" route show "$VIP/32"

step "xlb bgp in lb1"
"$XLB" bgp --socket "$WORK/lb1/xlb.sock"

step "$REQUESTS requests from the client (203.0.113.10) through the router, each a new connection"
for i in $(seq "$REQUESTS"); do
	printf 'request %2d: ' "$i"
	ip netns exec "${P}client" curl -s --max-time 3 "http://$VIP/" || echo "(no answer)"
done

step "packets each balancer forwarded (the router's ECMP spreads the connections)"
for lb in "${LBS[@]}"; do
	printf '%s: ' "$lb"
	"$XLB" list --stats --socket "$WORK/$lb/xlb.sock" | awk '/^TCP/ {print $4 " packets in " $3 " connections"}'
done

step "xlb drain-bgp in lb1: GRACEFUL_SHUTDOWN, then withdrawal after graceful_leave (3 s)"
"$XLB" drain-bgp --socket "$WORK/lb1/xlb.sock"
"$XLB" bgp --socket "$WORK/lb1/xlb.sock" | tail -2
sleep 4
ip -n "${P}rtr" route show "$VIP/32"
"$XLB" bgp --socket "$WORK/lb1/xlb.sock" | tail -2
echo
echo "demo done; tearing down"
