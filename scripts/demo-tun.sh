#!/usr/bin/env bash
# demo-tun.sh shows xlb's tunnel mode (IPVS TUN) beside direct routing, on
# one machine: one service whose real servers are rs1, on the balancer's
# segment (lvs_method DR), and rs4, one router hop away (lvs_method TUN
# type gue port 6080). Both answer the client directly with the client's
# own address; `xlb list -n` shows Route and Tunnel, as ipvsadm does.
# rs4 decapsulates with the kernel's ipip/fou devices, or, on a kernel
# without them, with the XDP decapsulator the tests use. Everything is torn
# down on exit, Ctrl-C or failure. Run it as root: `sudo make demo-tun`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=demo-lib.sh
. "$ROOT/scripts/demo-lib.sh"
export XLB_PREFIX=${XLB_PREFIX:-xlbtun-}
export XDP_PASS_OBJ="$ROOT/internal/datapath/xdppass_bpfel.o"
P=$XLB_PREFIX
VIP=192.0.2.10
RS4=203.0.113.140
REQUESTS=${REQUESTS:-12}
WORK=$(mktemp -d /tmp/xlb-demo-tun.XXXXXX)
SOCK=$WORK/xlb.sock
PINS=/sys/fs/bpf/xlb-demo-tun
XLB=$ROOT/bin/xlb
RSSERVER=$WORK/rsserver

[ "$(id -u)" = 0 ] || { echo "demo-tun.sh: run as root (sudo make demo-tun)" >&2; exit 1; }

cleanup() {
	set +e
	if [ -n "${XLB_PID:-}" ]; then
		"$XLB" stop --socket "$SOCK" >/dev/null 2>&1 || kill "$XLB_PID" 2>/dev/null
		wait "$XLB_PID" 2>/dev/null
	fi
	rm -rf "$PINS"
	"$ROOT/scripts/topology.sh" down >/dev/null 2>&1
	ip netns del "${P}probe" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_demo

# A kernel without the ipip and fou modules cannot decapsulate GUE itself:
# rs4 then runs the XDP decapsulator of the tests (GUE on port 6080).
ip netns add "${P}probe"
if ip -n "${P}probe" link add t4 type ipip external 2>/dev/null &&
	ip -n "${P}probe" fou add port 6080 gue 2>/dev/null; then
	decap="the kernel's ipip and fou"
else
	export DECAP_OBJ="$ROOT/internal/testutil/decap/decap_bpfel.o"
	decap="XDP ($DECAP_OBJ): this kernel has no ipip/fou"
fi
ip netns del "${P}probe"

step "topology: client, lb1 (holds VIP $VIP), rs1 on the segment; rs4 ($RS4) behind rtr, decapsulating with $decap"
"$ROOT/scripts/topology.sh" down >/dev/null 2>&1 || true
"$ROOT/scripts/topology.sh" up --vip-on lb1 --tunnel

step "real servers rs1 and rs4: HTTP on :80 answering 'NAME CLIENT-ADDRESS'"
for rs in rs1 rs4; do
	ip netns exec "${P}$rs" "$RSSERVER" -name "$rs" -http :80 >"$WORK/$rs.log" 2>&1 &
done

cat >"$WORK/keepalived.conf" <<EOF
virtual_server $VIP 80 {
    delay_loop 2
    lb_algo wrr
    lvs_method DR
    protocol TCP

    real_server 198.51.100.11 80 {
        weight 1
        TCP_CHECK { connect_timeout 1 }
    }
    real_server $RS4 80 {
        weight 1
        lvs_method TUN type gue port 6080
        TCP_CHECK { connect_timeout 1 }
    }
}
EOF
step "the configuration: one DR and one TUN real server"
cat "$WORK/keepalived.conf"
"$XLB" check -f "$WORK/keepalived.conf" --no-script-check

step "xlb run in lb1"
nsenter --net="/run/netns/${P}lb1" "$XLB" run -f "$WORK/keepalived.conf" -i eth0 \
	--xdp-mode native --bpffs "$PINS" --socket "$SOCK" >"$WORK/xlb.log" 2>&1 &
XLB_PID=$!
wait_api "$SOCK" "$XLB_PID" "$WORK/xlb.log"
sleep 2 # the first health checks, and rs4's next hop resolved
"$XLB" list -n --socket "$SOCK"

step "$REQUESTS requests from the client (198.51.100.10) to http://$VIP/, each a new connection"
for i in $(seq "$REQUESTS"); do
	printf 'request %2d: ' "$i"
	ip netns exec "${P}client" curl -s --max-time 3 "http://$VIP/" || echo "(no answer)"
done

step "xlb list --stats: rs4's packets left lb1 in GUE; its replies went from rs4 through rtr to the client"
"$XLB" list --stats --socket "$SOCK"
echo
echo "demo done; tearing down"
