package demux_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/captured"
	"github.com/straydtls/straydtls/record"
)

// TestListenerParsesOnce sends a Listener each kind of datagram its read
// path tells apart and counts how often record.Parse ran until the
// datagram was routed or dropped: at most once, by the filter or by the
// association machine, whichever reads it first (issue 26). Nothing else
// in the process parses meanwhile: the "stack" answers nothing, so the
// machine is never asked about a server datagram.
func TestListenerParsesOnce(t *testing.T) {
	if !record.CountingParses {
		t.Skip("parses are counted only with -tags straydtls_parsecount (.ci/run does)")
	}
	handshake := func(ctx context.Context, c *demux.Conn) (net.Conn, error) { return c, nil }
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := demux.NewListener(pc, handshake)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hello := captured.Named(t, "pion-v2-00-client-ClientHello-frag0.hex")
	stray := captured.Named(t, "pion-v2-08-client-alert-epoch1.hex")
	appData := captured.Named(t, "pion-v2-06-client-application-data-epoch1.hex")
	quiet, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	unknown, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer quiet.Close()
	defer unknown.Close()
	if err := ln.Filter().MarkClosed(quiet.LocalAddr()); err != nil {
		t.Fatal(err)
	}

	// send writes d from pc and waits until done says it was handled,
	// returning how many parses that took.
	send := func(what string, pc net.PacketConn, d []byte, done func(demux.Stats) bool) int64 {
		t.Helper()
		before := record.Parses()
		pc.WriteTo(d, ln.Addr())
		for deadline := time.Now().Add(5 * time.Second); !done(ln.Stats()); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not handled within 5 s: %+v", what, ln.Stats())
			}
		}
		return record.Parses() - before
	}
	for _, tc := range []struct {
		what string
		from net.PacketConn
		d    []byte
		done func(demux.Stats) bool
		want int64
	}{
		{"a quiet peer's stray (the filter drops it)", quiet, stray, func(s demux.Stats) bool { return s.Filter.TotalStrays() == 1 }, 1},
		{"an unknown peer's stray (the machine drops it)", unknown, stray, func(s demux.Stats) bool { return s.UnknownPeer == 1 }, 1},
		{"a quiet peer's ClientHello (the filter passes it, the machine opens)", quiet, hello, func(s demux.Stats) bool { return s.Created == 1 }, 1},
	} {
		if got := send(tc.what, tc.from, tc.d, tc.done); got != tc.want {
			t.Errorf("%s: parsed %d times; want %d", tc.what, got, tc.want)
		}
	}

	// An established peer's datagram takes the lock-free route, unparsed.
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	c.Read(buf) // the ClientHello the "handshake" left unread
	before := record.Parses()
	quiet.WriteTo(appData, ln.Addr())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if got := record.Parses() - before; got != 0 {
		t.Errorf("an established peer's application data: parsed %d times; want 0", got)
	}
}
