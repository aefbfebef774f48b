package record_test

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/pion/dtls/v4/pkg/protocol"
	"github.com/pion/dtls/v4/pkg/protocol/extension"
	"github.com/pion/dtls/v4/pkg/protocol/extension/dtls13"
	handshakev4 "github.com/pion/dtls/v4/pkg/protocol/handshake"
	recordv4 "github.com/pion/dtls/v4/pkg/protocol/recordlayer"

	"github.com/straydtls/straydtls/record"
)

// TestHelloRetryCookieEcho: in pion v4's DTLS 1.3 handshakes the cookie
// of the HelloRetryRequest comes back in the cookie extension of the
// second ClientHello, which spans two datagrams; the extension sits in
// the second, behind a key share that crosses the boundary. The first
// fragment leaves its walk pending, and Resume finds the cookie in the
// second.
func TestHelloRetryCookieEcho(t *testing.T) {
	files := recordsByName(t)
	for _, src := range []string{"pion-v4-dtls13", "pion-v4-dtls13-cid"} {
		ch1, hrrD := files[src+"-00-client-ClientHello-frag0.hex"], files[src+"-01-server-ServerHello-frag0.hex"]
		frag0, frag1 := files[src+"-02-client-ClientHello-frag0.hex"], files[src+"-03-client-ClientHello-frag1175.hex"]
		if ch1 == nil || hrrD == nil || frag0 == nil || frag1 == nil {
			t.Fatalf("%s: captured records missing; re-run TestCapture", src)
		}
		hrr := record.Inspect(hrrD)
		cookie, ok := hrr.Cookie(hrrD)
		if !hrr.AsksForCookie() || !ok || len(cookie) == 0 || !hrr.DTLS13() {
			t.Fatalf("%s: HelloRetryRequest asks %v, cookie %x (%v), selects 1.3 %v", src, hrr.AsksForCookie(), cookie, ok, hrr.DTLS13())
		}
		first, _ := clientHello(ch1)
		if !first.DTLS13 || len(first.Cookie) != 0 || !first.CookieRead {
			t.Errorf("%s: first ClientHello offers 1.3 %v, cookie %x, read %v", src, first.DTLS13, first.Cookie, first.CookieRead)
		}
		r := record.Inspect(frag0)
		second, ok := r.ClientHello(frag0)
		if !ok || second.Random != first.Random || second.MessageSeq != 1 {
			t.Fatalf("%s: second ClientHello %v, random %x seq %d", src, ok, second.Random, second.MessageSeq)
		}
		if second.CookieRead || len(second.Cookie) != 0 || !r.Scan().Pending() {
			t.Fatalf("%s: first fragment: cookie %x read %v, walk pending %v; want the cookie left to the next fragment",
				src, second.Cookie, second.CookieRead, r.Scan().Pending())
		}
		next := record.Inspect(frag1)
		if _, ok := next.Cookie(frag1); ok {
			t.Fatalf("%s: a later fragment read without Resume has a cookie", src)
		}
		if next.Resume(frag1, record.Scan{}) {
			t.Fatalf("%s: Resume from the zero Scan", src)
		}
		if !next.Resume(frag1, r.Scan()) {
			t.Fatalf("%s: Resume refused the next fragment", src)
		}
		echoed, ok := next.Cookie(frag1)
		if !ok || !bytes.Equal(echoed, cookie) || next.Scan().Pending() || !next.DTLS13() {
			t.Fatalf("%s: resumed cookie %x (%v), want %x; still pending %v; offers 1.3 %v", src, echoed, ok, cookie, next.Scan().Pending(), next.DTLS13())
		}
		// The first fragment again is not the next one.
		again := record.Inspect(frag0)
		if again.Resume(frag0, r.Scan()) {
			t.Fatalf("%s: Resume took the first fragment for the second", src)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		r := record.Inspect(files["pion-v4-dtls13-02-client-ClientHello-frag0.hex"])
		next := record.Inspect(files["pion-v4-dtls13-03-client-ClientHello-frag1175.hex"])
		next.Resume(files["pion-v4-dtls13-03-client-ClientHello-frag1175.hex"], r.Scan())
		next.Cookie(files["pion-v4-dtls13-03-client-ClientHello-frag1175.hex"])
	}); n != 0 {
		t.Fatalf("reading a fragmented ClientHello allocates %v times", n)
	}
}

// TestDTLS13ServerConnectionID: pion v4's DTLS 1.3 ServerHello with a
// post-quantum key share spans two datagrams and names its CID in the
// second; the client then puts that CID in its unified headers.
func TestDTLS13ServerConnectionID(t *testing.T) {
	files := recordsByName(t)
	sh0, sh1 := files["pion-v4-dtls13-cid-04-server-ServerHello-frag0.hex"], files["pion-v4-dtls13-cid-05-server-ServerHello-frag1175.hex"]
	r := record.Inspect(sh0)
	if _, ok := r.ServerConnectionID(sh0); ok || !r.Scan().Pending() || !r.DTLS13() {
		t.Fatalf("first ServerHello fragment: CID read, or walk not pending (%v), or 1.3 not selected (%v)", r.Scan().Pending(), r.DTLS13())
	}
	next := record.Inspect(sh1)
	if !next.Resume(sh1, r.Scan()) {
		t.Fatal("Resume refused the ServerHello's second fragment")
	}
	cid, ok := next.ServerConnectionID(sh1)
	if !ok || len(cid) != 8 {
		t.Fatalf("CID %x (%v), want 8 bytes", cid, ok)
	}
	for _, name := range []string{"pion-v4-dtls13-cid-06-client-dtls13-ciphertext-epoch2.hex", "pion-v4-dtls13-cid-10-client-dtls13-ciphertext-epoch3.hex"} {
		got, ok := record.ConnectionID(files[name], len(cid))
		if !ok || !bytes.Equal(got, cid) || !record.HasConnectionID(files[name]) {
			t.Errorf("%s: ConnectionID %x (%v), want %x", name, got, ok, cid)
		}
	}
	for _, name := range []string{"pion-v4-dtls13-08-server-dtls13-ciphertext-epoch3.hex", "pion-v4-dtls13-cid-08-server-dtls13-ciphertext-epoch3.hex"} {
		if _, ok := record.ConnectionID(files[name], 8); ok || record.HasConnectionID(files[name]) {
			t.Errorf("%s: the server's records carry no CID (the client asked for none)", name)
		}
	}
	// The 1.2 ServerHello names its CID whole in one datagram.
	sh12 := files["pion-v4-dtls12-cid-03-server-ServerHello-frag0.hex"]
	r = record.Inspect(sh12)
	cid12, ok := r.ServerConnectionID(sh12)
	if !ok || len(cid12) != 8 || r.DTLS13() {
		t.Fatalf("1.2 ServerHello: CID %x (%v), selects 1.3 %v", cid12, ok, r.DTLS13())
	}
	if got, _ := record.ConnectionID(files["pion-v4-dtls12-cid-06-client-connection-id-epoch1.hex"], 8); !bytes.Equal(got, cid12) {
		t.Errorf("1.2 client record's CID %x, want %x", got, cid12)
	}
}

// TestResumeAtEveryBoundary cuts every captured whole hello message into
// two fragments at every possible offset, as a smaller path MTU would, and
// checks that reading the first and resuming in the second finds what
// reading the whole message finds, unless the extension straddles the cut.
func TestResumeAtEveryBoundary(t *testing.T) {
	cuts := 0
	for _, rf := range loadRecords(t) {
		r := record.Inspect(rf.Data)
		if r.Class != record.ClassHandshake || r.Epoch != 0 || r.FragmentOffset != 0 || r.FragmentLength != r.MessageLength ||
			r.MsgType != record.HandshakeTypeClientHello && r.MsgType != record.HandshakeTypeServerHello {
			continue
		}
		whole := readHello(rf.Data)
		msg := rf.Data[25 : 25+r.MessageLength]
		for cut := 1; cut < len(msg); cut++ {
			a, b := fragment(rf.Data, msg, 0, cut), fragment(rf.Data, msg, cut, len(msg))
			ra, rb := record.Inspect(a), record.Inspect(b)
			got := readHello(a)
			if ra.Scan().Pending() {
				if !rb.Resume(b, ra.Scan()) {
					t.Fatalf("%s cut at %d: Resume refused the rest", rf.Name, cut)
				}
				got.merge(readHello(b), &rb, b)
			}
			if !whole.covers(got) {
				t.Fatalf("%s cut at %d: read %+v in fragments, %+v whole", rf.Name, cut, got, whole)
			}
			if got.cookie == nil && whole.cookie != nil && !straddles(msg, cut, 44) {
				t.Fatalf("%s cut at %d: cookie lost, but no extension straddles the cut", rf.Name, cut)
			}
			if got.cid == nil && whole.cid != nil && !straddles(msg, cut, 54) {
				t.Fatalf("%s cut at %d: CID lost, but no extension straddles the cut", rf.Name, cut)
			}
			cuts++
		}
	}
	if cuts == 0 {
		t.Fatal("no whole hello captured")
	}
}

// helloReading is what the accessors read of one hello fragment.
type helloReading struct {
	cookie, cid []byte
	dtls13      bool
}

func readHello(d []byte) helloReading {
	r := record.Inspect(d)
	var h helloReading
	h.cookie, _ = r.Cookie(d)
	if ch, ok := r.ClientHello(d); ok {
		h.cookie = ch.Cookie
	}
	h.cid, _ = r.ServerConnectionID(d)
	h.dtls13 = r.DTLS13()
	return h
}

// merge adds what a resumed fragment read.
func (h *helloReading) merge(o helloReading, r *record.Record, d []byte) {
	if c, ok := r.Cookie(d); ok && len(h.cookie) == 0 {
		h.cookie = c
	}
	if c, ok := r.ServerConnectionID(d); ok {
		h.cid = c
	}
	h.dtls13 = h.dtls13 || o.dtls13 || r.DTLS13()
}

// covers: what the fragments read is what the whole read, or nothing.
func (h helloReading) covers(o helloReading) bool {
	return (o.cookie == nil || bytes.Equal(o.cookie, h.cookie)) && (o.cid == nil || bytes.Equal(o.cid, h.cid)) &&
		(!o.dtls13 || h.dtls13)
}

// fragment builds a datagram holding bytes [from, to) of the message msg
// whose whole-message datagram is d.
func fragment(d, msg []byte, from, to int) []byte {
	out := slices.Clone(d[:25])
	binary.BigEndian.PutUint16(out[11:], uint16(12+to-from))
	out[19], out[20], out[21] = byte(from>>16), byte(from>>8), byte(from)
	out[22], out[23], out[24] = byte((to-from)>>16), byte((to-from)>>8), byte(to-from)
	return append(out, msg[from:to]...)
}

// straddles reports whether an extension of type typ in the hello msg has
// its header or data across offset cut (the resumed walk cannot read it).
func straddles(msg []byte, cut int, typ uint16) bool {
	at := extensionsAt(msg)
	if at < 0 {
		return true
	}
	end := at + 2 + int(binary.BigEndian.Uint16(msg[at:]))
	if at+2 > cut {
		return true // the extensions' own length field is past the first fragment
	}
	for at += 2; at+4 <= end; {
		t := binary.BigEndian.Uint16(msg[at:])
		n := int(binary.BigEndian.Uint16(msg[at+2:]))
		if at < cut && cut < at+4+n && (t == typ || cut < at+4) {
			return true
		}
		at += 4 + n
	}
	return false
}

// extensionsAt finds a ClientHello's or ServerHello's extensions length
// field by hand.
func extensionsAt(msg []byte) int {
	if len(msg) < 35 {
		return -1
	}
	at := 34 + 1 + int(msg[34])
	if msg[0] == 0xfe && isClientHello(msg) {
		at += 1 + int(msg[at])
		at += 2 + int(binary.BigEndian.Uint16(msg[at:]))
		at += 1 + int(msg[at])
	} else {
		at += 3
	}
	if at+2 > len(msg) {
		return -1
	}
	return at
}

// isClientHello tells the two apart by whether pion v4 parses msg as one.
func isClientHello(msg []byte) bool {
	var m handshakev4.MessageClientHello
	return m.Unmarshal(msg) == nil
}

// checkV4 compares Inspect and the hello accessors with pion v4's record
// layer and message parsers: the unified header and its CID, ACKs in the
// clear, and the extensions of whole ClientHellos and ServerHellos.
func checkV4(t *testing.T, data []byte) {
	t.Helper()
	if len(data) == 0 {
		return
	}
	r := record.Inspect(data)
	if data[0]&0xe0 == 0x20 {
		for _, n := range []int{1, 8} {
			p, err := recordv4.ParseRecord(firstRecordV4(data, n), n)
			cid, ok := record.ConnectionID(data, n)
			if err == nil && ok != (p.ConnectionID() != nil) || ok && err == nil && !bytes.Equal(cid, p.ConnectionID()) {
				t.Fatalf("% x with %d-byte CIDs: ConnectionID %x (%v), pion %x", data, n, cid, ok, p.ConnectionID())
			}
			if data[0]&0x10 == 0 && (err == nil) != (r.Class == record.ClassCiphertext) {
				t.Fatalf("% x: pion parses the unified record (%v) where Inspect classes %v", data, err, r.Class)
			}
		}
		return
	}
	if data[0] == record.ContentTypeACK && len(data) >= 13 && data[1] == 0xfe && data[3]|data[4] == 0 && (r.Class == record.ClassACK || r.Class == record.ClassMalformed) {
		body := data[13:min(len(data), 13+int(binary.BigEndian.Uint16(data[11:13])))]
		var a protocol.ACK
		if (a.Unmarshal(body) == nil) != (r.Class == record.ClassACK) && 13+int(binary.BigEndian.Uint16(data[11:13])) <= len(data) {
			t.Fatalf("% x: pion reads the ACK %v, Inspect classes %v", data, a.Unmarshal(body), r.Class)
		}
	}
	if r.Class != record.ClassHandshake || r.Epoch != 0 || r.FragmentOffset != 0 || r.FragmentLength != r.MessageLength {
		return
	}
	body := data[25 : 25+int(r.FragmentLength)]
	switch r.MsgType {
	case record.HandshakeTypeClientHello:
		var m handshakev4.MessageClientHello
		if m.Unmarshal(body) != nil {
			return
		}
		ch, _ := r.ClientHello(data)
		want := helloReading{cookie: m.Cookie}
		early := false
		for _, e := range m.Extensions {
			switch v := e.(type) {
			case *dtls13.OfferedVersions:
				want.dtls13 = slices.Contains(v.Versions, protocol.Version1_3)
			case *dtls13.Cookie:
				if len(m.Cookie) == 0 {
					want.cookie = v.Cookie
				}
			case *dtls13.EarlyData:
				early = true
			}
		}
		if !bytes.Equal(ch.Cookie, want.cookie) || ch.DTLS13 != want.dtls13 || ch.EarlyData != early || !ch.CookieRead {
			t.Fatalf("% x: pion reads cookie %x, 1.3 %v, early data %v; ClientHello %+v", data, want.cookie, want.dtls13, early, ch)
		}
	case record.HandshakeTypeServerHello:
		var m handshakev4.MessageServerHello
		if m.Unmarshal(body) != nil {
			return
		}
		var want helloReading
		for _, e := range m.Extensions {
			switch v := e.(type) {
			case *dtls13.SelectedVersion:
				want.dtls13 = v.Version == protocol.Version1_3
			case *dtls13.Cookie:
				want.cookie = v.Cookie
			case *extension.ConnectionID:
				want.cid = v.CID
			}
		}
		cookie, _ := r.Cookie(data)
		cid, hasCID := r.ServerConnectionID(data)
		if !bytes.Equal(cookie, want.cookie) || !bytes.Equal(cid, want.cid) || hasCID != (want.cid != nil) || r.DTLS13() != want.dtls13 {
			t.Fatalf("% x: pion reads cookie %x, CID %x, 1.3 %v; Inspect %x, %x (%v), %v", data, want.cookie, want.cid, want.dtls13, cookie, cid, hasCID, r.DTLS13())
		}
	}
}

// firstRecordV4 cuts the first record out of a datagram as pion v4's
// listener does.
func firstRecordV4(data []byte, cidLen int) []byte {
	recs, _ := recordv4.UnpackDatagram(data, recordv4.UnpackDatagramConfig{CIDLength: cidLen})
	if len(recs) == 0 {
		return data
	}
	return recs[0]
}
