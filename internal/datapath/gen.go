package datapath

// The BPF objects are committed, so `go build` needs no clang; CI runs
// `make check-generated` to prove they match the C sources.
//go:generate go tool bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type vip_key -type vip_meta -type backend -type backend_ref -type flow_key -type flow4_key -type flow -type lb_stats -type xlb_iface -type xlb_counter -type xlb_family -type xlb_svc_flags -type xlb_be_flags -type xlb_flow_state -type xlb_atime -type xlb_vip_filter lb ../../bpf/lb.c -- -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" xdppass ../../bpf/pass.c -- -I/usr/include/x86_64-linux-gnu
