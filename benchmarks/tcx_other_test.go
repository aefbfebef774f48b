//go:build !linux

package benchmarks

import (
	"net/netip"
	"testing"
)

func startTCXNoop(b *testing.B, server netip.AddrPort) *relayProcess {
	b.Skip("tcx is Linux's")
	return nil
}
