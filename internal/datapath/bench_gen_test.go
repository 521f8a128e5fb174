package datapath

// The benchmark's baselines and wrapper exist only in test builds
// (-output-suffix _test); like lb, their objects are committed and checked
// by `make check-generated`.
//go:generate go tool bpf2go -target bpfel -output-suffix _test -output-stem bench_bare -cflags "-O2 -g -Wall -Werror -mcpu=v3" benchBare ../../bpf/bench/bare.c -- -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -target bpfel -output-suffix _test -output-stem bench_lookup -cflags "-O2 -g -Wall -Werror -mcpu=v3" benchLookup ../../bpf/bench/lookup.c -- -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -target bpfel -output-suffix _test -output-stem bench_wrapper -cflags "-O2 -g -Wall -Werror -mcpu=v3" benchWrapper ../../bpf/bench/wrapper.c -- -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -target bpfel -output-suffix _test -output-stem bench_live -cflags "-O2 -g -Wall -Werror -mcpu=v3" benchLive ../../bpf/bench/live.c -- -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -target bpfel -output-suffix _test -output-stem bench_unwrap -type bench_frame -cflags "-O2 -g -Wall -Werror -mcpu=v3" benchUnwrap ../../bpf/bench/unwrap.c -- -I/usr/include/x86_64-linux-gnu
