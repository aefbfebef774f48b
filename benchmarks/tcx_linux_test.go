package benchmarks

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// startTCXNoop attaches at tcx ingress and egress of lo a program that
// only returns TCX_NEXT: what any filter at tcx costs before it reads a
// byte, the ceiling for strayguard on this machine.
func startTCXNoop(b *testing.B, server netip.AddrPort) *relayProcess {
	if os.Geteuid() != 0 {
		b.Skip("attaching at tcx needs root")
	}
	attachTCXNoop(b, "lo")
	return &relayProcess{addr: server, noCPU: true}
}

// attachTCXNoop attaches the do-nothing program at tcx ingress and egress
// of iface until the benchmark ends.
func attachTCXNoop(b *testing.B, iface string) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		b.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TCX_NEXT
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: prog, Attach: at})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
	}
}
