package record_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	dtlsv4 "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"
	recordv4 "github.com/pion/dtls/v4/pkg/protocol/recordlayer"
	"github.com/straydtls/straydtls/internal/fixture"
)

// v4Captures are the pion/dtls v4 associations TestCapture records: DTLS
// 1.2 and 1.3, each without and with connection IDs. pion's 1.3 server
// answers the first ClientHello with a HelloRetryRequest (it prefers
// X25519MLKEM768, offered second), and the second ClientHello and the
// ServerHello, with their post-quantum key shares, span two datagrams each.
var v4Captures = []struct {
	name    string
	version protocol.Version
	cidLen  int
}{
	{"pion-v4-dtls12", protocol.Version1_2, 0},
	{"pion-v4-dtls13", protocol.Version1_3, 0},
	{"pion-v4-dtls12-cid", protocol.Version1_2, 8},
	{"pion-v4-dtls13-cid", protocol.Version1_3, 8},
}

// captureV4 captures a pion/dtls v4 association of the given version: a
// handshake, one message each way and a close from the client. With
// cidLen > 0 the server makes CIDs of that length and the client sends
// them (it asks for none itself).
func captureV4(t *testing.T, version protocol.Version, cidLen int) []capturedDatagram {
	sopts := fixture.ServerV4At(t, version)
	copts := fixture.ClientV4At(t, version)
	if cidLen > 0 {
		sopts = append(sopts, dtlsv4.WithConnectionID(dtlsv4.RandomCIDGenerator(cidLen), dtlsv4.CIDPathMigrationReject))
		copts = append(copts, dtlsv4.WithConnectionID(dtlsv4.OnlySendCIDGenerator(), dtlsv4.CIDPathMigrationReject))
	}
	ln, err := dtlsv4.ListenAddr("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, sopts...)
	if err != nil {
		t.Fatal(err)
	}
	return mustCapture(t, ln, func(relay netip.AddrPort) {
		c, err := dtlsv4.Dial("udp", net.UDPAddrFromAddrPort(relay), copts...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.HandshakeContext(ctx); err != nil {
			t.Fatal(err)
		}
		echo(t, c)
		c.Close()
	})
}

// pionV4Unified describes a DTLS 1.3 unified-header record as pion v4's
// record layer reads it: always ciphertext, with the low two bits of its
// epoch on the wire.
func pionV4Unified(data []byte, cidLen int) (expect, desc string) {
	recs, err := recordv4.UnpackDatagram(data, recordv4.UnpackDatagramConfig{CIDLength: cidLen})
	if err != nil || len(recs) == 0 {
		return "class=malformed", "malformed"
	}
	p, err := recordv4.ParseRecord(recs[0], cidLen)
	if err != nil {
		return "class=malformed", "malformed"
	}
	return fmt.Sprintf("class=dtls13-ciphertext epoch=%d opens=false", p.EpochLow()),
		fmt.Sprintf("dtls13-ciphertext-epoch%d", p.EpochLow())
}
