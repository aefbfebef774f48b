package strayfilter_test

import (
	"net"
	"testing"

	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

// countParses returns how many times record.Parse ran during f, skipping
// the test when the build does not count (-tags straydtls_parsecount).
// Nothing else may parse while f runs: tests that use it are not parallel.
func countParses(t *testing.T, f func()) int64 {
	t.Helper()
	needParseCount(t)
	before := record.Parses()
	f()
	return record.Parses() - before
}

// TestBatchParsesOnce reads a quiet peer's new ClientHello, its stray and
// a live peer's datagram through ReadBatchAddrPort, and has the reader look
// at each passing datagram's record through the Batch, as demux and the
// relay do: each datagram is parsed once at most, wherever it is looked at.
func TestBatchParsesOnce(t *testing.T) {
	needParseCount(t)
	raw := listenLoopback(t)
	c, err := strayfilter.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	quiet, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	live, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer quiet.Close()
	defer live.Close()
	c.MarkClosed(quiet.LocalAddr())
	hello := loadRecord(t, "pion-v2-00-client-ClientHello-frag0.hex")
	stray := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
	appData := loadRecord(t, "pion-v2-06-client-application-data-epoch1.hex")
	b := strayfilter.NewBatch(1, 2048) // one datagram per read: each is counted apart

	for _, tc := range []struct {
		name      string
		from      net.PacketConn
		send      [][]byte
		filtered  int64 // parses by the read, which judges only quiet peers
		readerSaw bool  // the reader's look parses nothing more
	}{
		{"quiet peer's stray, then its ClientHello", quiet, [][]byte{stray, hello}, 2, true},
		{"live peer", live, [][]byte{appData}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, d := range tc.send {
				tc.from.WriteTo(d, raw.LocalAddr())
			}
			var n int
			read := countParses(t, func() { n, err = c.ReadBatchAddrPort(b) })
			if err != nil || n != 1 {
				t.Fatalf("ReadBatchAddrPort = %d, %v; want the one datagram that passes", n, err)
			}
			if read != tc.filtered {
				t.Errorf("the read parsed %d times; want %d (one per datagram it judged)", read, tc.filtered)
			}
			p := b.Parsed(0)
			if p.Done() != tc.readerSaw {
				t.Errorf("Parsed(0).Done() = %v before the reader looked; want %v", p.Done(), tc.readerSaw)
			}
			d := b.Bufs[0][:b.N[0]]
			var class record.Class
			looked := countParses(t, func() { class = p.Record(d).Class; p.Record(d) })
			if want := int64(0); tc.readerSaw && looked != want {
				t.Errorf("the reader's looks parsed %d times; want none: the filter had", looked)
			} else if !tc.readerSaw && looked != 1 {
				t.Errorf("the reader's two looks parsed %d times; want 1", looked)
			}
			if want := record.Inspect(d).Class; class != want {
				t.Errorf("Parsed record's class = %v; want %v, Inspect's", class, want)
			}
		})
	}
	// The next read forgets: the slot holds the new datagram's record.
	live.WriteTo(hello, raw.LocalAddr())
	if n, err := c.ReadBatchAddrPort(b); err != nil || n != 1 {
		t.Fatalf("ReadBatchAddrPort = %d, %v", n, err)
	}
	if b.Parsed(0).Done() {
		t.Error("Parsed(0) still holds the last read's record")
	}
}

func needParseCount(t *testing.T) {
	t.Helper()
	if !record.CountingParses {
		t.Skip("parses are counted only with -tags straydtls_parsecount (.ci/run does)")
	}
}
