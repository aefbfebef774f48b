package relay

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestUpstreamWriter: a datagram written to an upstream socket through its
// raw conn arrives whole and costs no allocation, and an upstream that is
// gone surfaces as the error the relay counts and warns about (transient:
// ECONNREFUSED), not as a failed write.
func TestUpstreamWriter(t *testing.T) {
	server, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	// An upstream socket as openLocked makes one, with the raw conn the
	// pump loop would have set, but no loop reading it: the loop's read
	// would take the kernel's error report before the write below could.
	conn, err := net.DialUDP("udp4", nil, server.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	u := &upstreamConn{conn: conn, rc: rc}

	var w upstreamWriter
	d := []byte("a client datagram")
	const runs = 50
	if a := testing.AllocsPerRun(runs, func() {
		if err := w.write(u, d); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("%.1f allocations per write, want 0", a)
	}
	buf := make([]byte, 64)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range runs + 1 { // AllocsPerRun runs the function once more to warm up
		n, from, err := server.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if string(buf[:n]) != string(d) || from != u.conn.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("datagram %d: %q from %v, want %q from the upstream socket %v", i, buf[:n], from, d, u.conn.LocalAddr())
		}
	}

	// The kernel reports the closed port to the next write after the ICMP
	// error arrives.
	server.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := w.write(u, d)
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) || !transient(err) {
				t.Fatalf("write to a closed upstream: %v, want ECONNREFUSED", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no write reported the closed upstream")
		}
		time.Sleep(time.Millisecond)
	}
}
