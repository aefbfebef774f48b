package udpio

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A link-local source read by recvmmsg must carry the zone the standard
// library's reads give it (the interface name), or the same peer would be
// two keys in the quiet-peer table depending on the read path.
func TestSockaddrZoneMatchesStandardLibrary(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Skipf("no interfaces to name: %v", err)
	}
	for _, ifi := range ifs {
		var sa unix.RawSockaddrInet6
		sa.Family = unix.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], 5684)
		sa.Addr = netip.MustParseAddr("fe80::1").As16()
		sa.Scope_id = uint32(ifi.Index)
		want := netip.AddrPortFrom(netip.MustParseAddr("fe80::1").WithZone(ifi.Name), 5684)
		for range 2 { // the second answer comes from the cache
			if got := sockaddrToAddrPort(&sa); got != want {
				t.Fatalf("interface %d: got %v, want %v", ifi.Index, got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		var sa unix.RawSockaddrInet6
		sa.Family = unix.AF_INET6
		sa.Scope_id = uint32(ifs[0].Index)
		sockaddrToAddrPort(&sa)
	}); n != 0 {
		t.Fatalf("a known zone costs %v allocations", n)
	}
}
