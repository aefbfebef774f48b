package record_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"

	"github.com/straydtls/straydtls/record"
)

// TestCookieEcho: in every captured handshake the second ClientHello
// echoes, byte for byte, the cookie of the HelloVerifyRequest before it,
// and the first carries none. That echo is what proves a client's address.
func TestCookieEcho(t *testing.T) {
	files := recordsByName(t)
	for _, c := range []struct{ first, hvr, second string }{
		{"openssl-s_client-00-client-ClientHello-frag0.hex", "openssl-s_client-01-server-HelloVerifyRequest-frag0.hex", "openssl-s_client-02-client-ClientHello-frag0.hex"},
		{"pion-v2-00-client-ClientHello-frag0.hex", "pion-v2-01-server-HelloVerifyRequest-frag0.hex", "pion-v2-02-client-ClientHello-frag0.hex"},
		{"pion-v3-cid-00-client-ClientHello-frag0.hex", "pion-v3-cid-01-server-HelloVerifyRequest-frag0.hex", "pion-v3-cid-02-client-ClientHello-frag0.hex"},
	} {
		hvr := record.Inspect(files[c.hvr])
		cookie, ok := hvr.Cookie(files[c.hvr])
		if !ok || len(cookie) == 0 {
			t.Fatalf("%s: Cookie = %x, %v", c.hvr, cookie, ok)
		}
		if !hvr.AsksForCookie() {
			t.Errorf("%s: AsksForCookie = false", c.hvr)
		}
		first, ok1 := clientHello(files[c.first])
		second, ok2 := clientHello(files[c.second])
		if !ok1 || !ok2 || !first.CookieRead || !second.CookieRead {
			t.Fatalf("%s, %s: parsed %v %v, cookie read %v %v", c.first, c.second, ok1, ok2, first.CookieRead, second.CookieRead)
		}
		if len(first.Cookie) != 0 || first.MessageSeq != 0 {
			t.Errorf("%s: cookie %x, message_seq %d; want none and 0", c.first, first.Cookie, first.MessageSeq)
		}
		if !bytes.Equal(second.Cookie, cookie) || second.MessageSeq != 1 || second.Random != first.Random {
			t.Errorf("%s: cookie %x seq %d random %x; want the HelloVerifyRequest's %x, 1 and %x",
				c.second, second.Cookie, second.MessageSeq, second.Random, cookie, first.Random)
		}
	}
	// A first fragment that ends inside the cookie (a small path MTU) holds
	// the random but not the cookie: the random still routes it, the cookie
	// cannot be checked.
	cut := bytes.Clone(files["pion-v2-02-client-ClientHello-frag0.hex"][:13+12+40])
	cut[11], cut[12] = 0, 12+40          // record length
	cut[22], cut[23], cut[24] = 0, 0, 40 // fragment_length
	ch, ok := clientHello(cut)
	if !ok || ch.CookieRead || len(ch.Cookie) != 0 {
		t.Errorf("fragment cut inside the cookie: ok %v, cookie read %v (%x); want true, false", ok, ch.CookieRead, ch.Cookie)
	}
	for _, name := range []string{
		"pion-v2-mtu60-01-client-ClientHello-frag60.hex", // not the first fragment
		"pion-v2-01-server-HelloVerifyRequest-frag0.hex",
		"pion-v2-06-client-application-data-epoch1.hex",
	} {
		if _, ok := clientHello(files[name]); ok {
			t.Errorf("%s: parsed as a ClientHello", name)
		}
	}
	for _, name := range []string{
		"pion-v2-03-server-ServerHello-frag0.hex",
		"pion-v2-00-client-ClientHello-frag0.hex",
		"pion-v2-05-server-change-cipher-spec-epoch0.hex",
		"openssl-s_client-08-server-alert-epoch1.hex",
	} {
		r := record.Inspect(files[name])
		if _, ok := r.Cookie(files[name]); ok || r.AsksForCookie() {
			t.Errorf("%s: read as a request for a cookie", name)
		}
	}
}

// TestHelloRetryRequestAsksForCookie: a DTLS 1.3 ServerHello whose random
// is the HelloRetryRequest value asks for a cookie like a
// HelloVerifyRequest; any other ServerHello answers.
func TestHelloRetryRequestAsksForCookie(t *testing.T) {
	sh := recordsByName(t)["pion-v2-03-server-ServerHello-frag0.hex"]
	if r := record.Inspect(sh); r.AsksForCookie() {
		t.Fatal("a ServerHello asks for a cookie")
	}
	hrr := bytes.Clone(sh)
	copy(hrr[13+12+2:], []byte{
		0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
		0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
	})
	if r := record.Inspect(hrr); !r.AsksForCookie() {
		t.Fatal("a HelloRetryRequest does not ask for a cookie")
	}
}

func clientHello(d []byte) (record.ClientHello, bool) {
	r := record.Inspect(d)
	return r.ClientHello(d)
}

func recordsByName(t testing.TB) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, rf := range loadRecords(t) {
		files[rf.Name] = rf.Data
	}
	return files
}

// helloRetryCookieByHand finds the cookie extension of a HelloRetryRequest
// that is whole in the datagram, without record's walk.
func helloRetryCookieByHand(d []byte) []byte {
	msg := d[25:]
	at := extensionsAt(msg)
	if at < 0 {
		return nil
	}
	end := min(len(msg), at+2+int(binary.BigEndian.Uint16(msg[at:])))
	for at += 2; at+4 <= end; {
		t, n := binary.BigEndian.Uint16(msg[at:]), int(binary.BigEndian.Uint16(msg[at+2:]))
		if at+4+n > end {
			return nil
		}
		if t == 44 && n >= 3 && int(binary.BigEndian.Uint16(msg[at+4:])) == n-2 {
			return msg[at+6 : at+4+n]
		}
		at += 4 + n
	}
	return nil
}

// checkHellosAgainstPion compares ClientHello and Cookie
// with pion's message parsers wherever a datagram holds a whole message.
func checkHellosAgainstPion(t *testing.T, data []byte) {
	t.Helper()
	r := record.Inspect(data)
	ch, ok := r.ClientHello(data)
	if ok != (r.OpensAssociation() && r.FragmentOffset == 0 && r.FragmentLength >= 34) {
		t.Fatalf("% x: ClientHello ok=%v for %+v", data, ok, r)
	}
	if ok && r.FragmentLength == r.MessageLength {
		var m handshake.MessageClientHello
		if err := m.Unmarshal(data[13+12 : 13+12+int(r.FragmentLength)]); err == nil {
			// A cookie extension (DTLS 1.3) stands in for an empty legacy
			// cookie; pion v3 reads only the legacy one (checkV4 the other).
			legacy := ch.Cookie
			if len(m.Cookie) == 0 {
				legacy = nil
			}
			if m.Random.MarshalFixed() != ch.Random || !bytes.Equal(m.Cookie, legacy) {
				t.Fatalf("% x: pion reads random %x cookie %x, ClientHello %x %x (read %v)",
					data, m.Random.MarshalFixed(), m.Cookie, ch.Random, ch.Cookie, ch.CookieRead)
			}
		}
	}
	checkServerCIDAgainstPion(t, data, &r)
	cookie, ok := r.Cookie(data)
	if ok && !r.AsksForCookie() && r.MsgType != record.HandshakeTypeClientHello && r.MsgType != record.HandshakeTypeServerHello {
		t.Fatalf("% x: a cookie read from a message that neither asks for nor echoes one", data)
	}
	if r.AsksForCookie() && r.MsgType == record.HandshakeTypeServerHello && ok && !bytes.Equal(cookie, helloRetryCookieByHand(data)) {
		t.Fatalf("% x: HelloRetryRequest cookie %x, by hand %x", data, cookie, helloRetryCookieByHand(data))
	}
	if r.Class == record.ClassHandshake && r.HasHandshakeHeader && r.MsgType == record.HandshakeTypeHelloVerifyRequest && r.FragmentOffset == 0 && r.FragmentLength == r.MessageLength {
		var m handshake.MessageHelloVerifyRequest
		if err := m.Unmarshal(data[13+12 : 13+12+int(r.FragmentLength)]); err == nil && (!ok || !bytes.Equal(m.Cookie, cookie)) {
			t.Fatalf("% x: pion reads cookie %x, Cookie %x (%v)", data, m.Cookie, cookie, ok)
		}
	}
}

func TestHelloParsingDoesNotAllocate(t *testing.T) {
	files := recordsByName(t)
	ch2 := files["pion-v2-02-client-ClientHello-frag0.hex"]
	hvr := files["pion-v2-01-server-HelloVerifyRequest-frag0.hex"]
	if n := testing.AllocsPerRun(100, func() {
		r := record.Inspect(ch2)
		r.ClientHello(ch2)
		r = record.Inspect(hvr)
		r.Cookie(hvr)
		r.AsksForCookie()
	}); n != 0 {
		t.Fatalf("hello parsing allocates %v times per call", n)
	}
}

// checkServerCIDAgainstPion: wherever pion reads a whole ServerHello, the
// CID ServerConnectionID returns is the one pion's connection_id extension
// holds (what pion's own listener routes by).
func checkServerCIDAgainstPion(t *testing.T, data []byte, r *record.Record) {
	t.Helper()
	cid, ok := r.ServerConnectionID(data)
	if r.Class != record.ClassHandshake || !r.HasHandshakeHeader || r.MsgType != record.HandshakeTypeServerHello || r.FragmentOffset != 0 {
		if ok {
			t.Fatalf("% x: a CID %x read from what is no ServerHello's first fragment", data, cid)
		}
		return
	}
	if r.FragmentLength != r.MessageLength {
		return // TestResumeAtEveryBoundary checks fragments against whole messages
	}
	var m handshake.MessageServerHello
	if err := m.Unmarshal(data[13+12 : 13+12+int(r.FragmentLength)]); err != nil {
		return
	}
	for _, e := range m.Extensions {
		if c, isCID := e.(*extension.ConnectionID); isCID {
			if !ok || !bytes.Equal(c.CID, cid) {
				t.Fatalf("% x: pion reads CID %x, ServerConnectionID %x (%v)", data, c.CID, cid, ok)
			}
			return
		}
	}
	if ok {
		t.Fatalf("% x: ServerConnectionID %x where pion reads no connection_id extension", data, cid)
	}
}

// TestServerConnectionID: the CID in pion's captured ServerHello is the
// one the client then puts in every tls12_cid record it sends.
func TestServerConnectionID(t *testing.T) {
	files := recordsByName(t)
	sh := files["pion-v3-cid-03-server-ServerHello-frag0.hex"]
	r := record.Inspect(sh)
	cid, ok := r.ServerConnectionID(sh)
	if !ok || len(cid) != 8 {
		t.Fatalf("ServerConnectionID of pion's ServerHello: %x, %v; want 8 bytes", cid, ok)
	}
	for _, name := range []string{"pion-v3-cid-06-client-connection-id-epoch1.hex", "pion-v3-cid-08-client-connection-id-epoch1.hex"} {
		d := files[name]
		if r := record.Inspect(d); r.Class != record.ClassConnectionID {
			t.Errorf("%s: classed %v", name, r.Class)
		}
		got, ok := record.ConnectionID(d, len(cid))
		if !ok || !bytes.Equal(got, cid) {
			t.Errorf("%s: ConnectionID %x, %v; want the ServerHello's %x", name, got, ok, cid)
		}
	}
	ch := files["pion-v2-02-client-ClientHello-frag0.hex"]
	if _, ok := record.ConnectionID(ch, 8); ok {
		t.Error("a ClientHello has a CID")
	}
	hvr := files["pion-v3-cid-01-server-HelloVerifyRequest-frag0.hex"]
	r = record.Inspect(hvr)
	if _, ok := r.ServerConnectionID(hvr); ok {
		t.Error("a HelloVerifyRequest names a CID")
	}
	if n := testing.AllocsPerRun(100, func() {
		r := record.Inspect(sh)
		r.ServerConnectionID(sh)
	}); n != 0 {
		t.Fatalf("ServerConnectionID allocates %v times", n)
	}
}
