package relay_test

import (
	"net"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/captured"
	"github.com/straydtls/straydtls/record"
)

// TestRelayParsesOnce sends the relay each kind of client datagram its
// read path tells apart and counts how often record.Parse ran until the
// datagram was forwarded or dropped: once, by the association machine,
// whose record the drop path counts its reason from (issue 26). The server
// behind it is a silent socket, so the machine is never asked about a
// server datagram meanwhile.
func TestRelayParsesOnce(t *testing.T) {
	if !record.CountingParses {
		t.Skip("parses are counted only with -tags straydtls_parsecount (.ci/run does)")
	}
	server := listenLoopback(t, "127.0.0.1:0")
	r := start(t, "127.0.0.1:0", server.LocalAddr().(*net.UDPAddr).AddrPort())
	hello := captured.Named(t, "pion-v2-00-client-ClientHello-frag0.hex")
	stray := captured.Named(t, "pion-v2-08-client-alert-epoch1.hex")
	quiet := listenLoopback(t, "127.0.0.1:0")
	unknown := listenLoopback(t, "127.0.0.1:0")
	fresh := listenLoopback(t, "127.0.0.1:0")
	if err := r.Table().MarkClosed(quiet.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		from *net.UDPConn
		d    []byte
		done func(relay.Stats) bool
	}{
		{"a quiet client's stray", quiet, stray, func(s relay.Stats) bool { return s.TotalStrays() == 1 }},
		{"an unknown client's stray", unknown, stray, func(s relay.Stats) bool { return s.DroppedUnknown == 1 }},
		{"a new client's ClientHello", fresh, hello, func(s relay.Stats) bool { return s.ToServer == 1 }},
	} {
		before := record.Parses()
		tc.from.WriteToUDPAddrPort(tc.d, addrOf(r))
		for deadline := time.Now().Add(5 * time.Second); !tc.done(r.Stats()); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not handled within 5 s: %+v", tc.what, r.Stats())
			}
		}
		if got := record.Parses() - before; got != 1 {
			t.Errorf("%s: parsed %d times; want 1", tc.what, got)
		}
	}
}
