package ebpf

// The generated lb_bpfel.go, lb_bpfel.o, steer_bpfel.go and steer_bpfel.o
// are committed, so building needs no clang. Regenerating needs clang,
// llvm-strip, libbpf-dev (bpf_helpers.h) and linux-libc-dev (linux/bpf.h);
// the include path below is Debian's on amd64. Only the little-endian
// objects are built: Keelson runs on little-endian machines (amd64, arm64).
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package ebpf lb bpf/lb.c -- -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package ebpf steer bpf/steer.c -- -I/usr/include/x86_64-linux-gnu
