package strayguard

// The compiled programs are committed, so building needs no clang; this
// rebuilds them from bpf/guard.c with Debian's clang-14 and llvm-strip-14
// (apt-get install -y clang-14 llvm-14). .ci/run checks that they match.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -Wall -Werror -mcpu=v3" -tags linux -target bpfel,bpfeb -go-package strayguard guard bpf/guard.c
