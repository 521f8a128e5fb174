#!/usr/bin/env bash
# demo.sh shows xlb doing what LVS-DR does, on one machine: it builds the
# namespace topology (client, lb1, rs1..rs3 on one bridge), runs `xlb run`
# in lb1 on examples/keepalived.conf, starts an HTTP server in each real
# server that answers with its name and the client address it saw, sends
# requests from the client to the VIP, and prints who answered and the
# `xlb list --stats` table. Everything is torn down on exit, Ctrl-C or
# failure. Run it as root: `sudo make demo`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=demo-lib.sh
. "$ROOT/scripts/demo-lib.sh"
export XLB_PREFIX=${XLB_PREFIX:-xlbdemo-}
export XDP_PASS_OBJ="$ROOT/internal/datapath/xdppass_bpfel.o"
P=$XLB_PREFIX
VIP=192.0.2.10
REQUESTS=${REQUESTS:-12}
WORK=$(mktemp -d /tmp/xlb-demo.XXXXXX)
SOCK=$WORK/xlb.sock
XLB=$ROOT/bin/xlb
RSSERVER=$WORK/rsserver

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (sudo make demo)" >&2; exit 1; }

cleanup() {
	set +e
	# xlb stop removes the data path; SIGTERM alone would leave it pinned
	# (restart-safe), which a demo must not.
	if [ -n "${XLB_PID:-}" ]; then
		"$XLB" stop --socket "$SOCK" >/dev/null 2>&1 || kill "$XLB_PID" 2>/dev/null
		wait "$XLB_PID" 2>/dev/null
	fi
	rm -rf /sys/fs/bpf/xlb-demo
	"$ROOT/scripts/topology.sh" down >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_demo

step "topology: client, lb1 (holds VIP $VIP), rs1..rs3 (VIP on lo, arp_ignore=1, arp_announce=2)"
"$ROOT/scripts/topology.sh" down >/dev/null 2>&1 || true
"$ROOT/scripts/topology.sh" up --vip-on lb1

step "real servers: HTTP on :80 answering 'NAME CLIENT-ADDRESS'"
for rs in rs1 rs2 rs3; do
	ip netns exec "${P}$rs" "$RSSERVER" -name "$rs" -http :80 >"$WORK/$rs.log" 2>&1 &
done

step "xlb run in lb1 on examples/keepalived.conf"
# nsenter keeps the root mount namespace, so the pins under /sys/fs/bpf/
# are visible to bpftool from the host (ip netns exec would hide them).
nsenter --net="/run/netns/${P}lb1" "$XLB" run -f "$ROOT/examples/keepalived.conf" -i eth0 \
	--xdp-mode native --bpffs /sys/fs/bpf/xlb-demo --socket "$SOCK" >"$WORK/xlb.log" 2>&1 &
XLB_PID=$!
wait_api "$SOCK" "$XLB_PID" "$WORK/xlb.log"
"$XLB" list -n --socket "$SOCK"

step "$REQUESTS requests from the client (198.51.100.10) to http://$VIP/, each a new connection"
for i in $(seq "$REQUESTS"); do
	printf 'request %2d: ' "$i"
	ip netns exec "${P}client" curl -s --max-time 3 "http://$VIP/" || echo "(no answer)"
done

step "xlb list --stats (DR: the balancer sees only client-to-VIP packets; replies go straight to the client)"
"$XLB" list --stats --socket "$SOCK"
step "xlb list -n"
"$XLB" list -n --socket "$SOCK"
step "pinned maps: bpftool map dump pinned /sys/fs/bpf/xlb-demo/services"
bpftool map dump pinned /sys/fs/bpf/xlb-demo/services 2>/dev/null | head -30 || true
echo
echo "demo done; tearing down"
