# demo-lib.sh: what the demos (demo.sh, demo-bgp.sh, demo-tun.sh) share.
# Sourced, not run; the caller sets ROOT, XLB and RSSERVER.

step() { printf '\n== %s\n' "$*"; }

# build_demo builds xlb (unless make already did) and the real servers'
# HTTP server.
build_demo() {
	step "building"
	[ -x "$XLB" ] || (cd "$ROOT" && go build -o "$XLB" ./cmd/xlb)
	(cd "$ROOT" && go build -o "$RSSERVER" ./internal/testutil/cmd/rsserver)
}

# wait_api SOCK PID LOG waits up to 15 s for the xlb run PID to answer on
# SOCK, prints its log, and fails the demo if it did not.
wait_api() {
	local sock=$1 pid=$2 log=$3 ready=
	for _ in $(seq 150); do
		if [ -S "$sock" ] && "$XLB" list --socket "$sock" >/dev/null 2>&1; then ready=1; break; fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	cat "$log"
	[ -n "$ready" ] || { echo "$(basename "$0"): xlb run did not come up" >&2; exit 1; }
}
