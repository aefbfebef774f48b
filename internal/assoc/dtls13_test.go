package assoc

import (
	"bytes"
	"testing"

	"github.com/straydtls/straydtls/internal/captured"
	"github.com/straydtls/straydtls/record"
)

// capturedNamed returns pion v4's datagrams of one captured association, by
// file name, failing t on a missing one.
func capturedNamed(t *testing.T, names ...string) [][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, rf := range captured.Records(t, false) {
		files[rf.Name] = rf.Data
	}
	var out [][]byte
	for _, n := range names {
		d := files[n]
		if d == nil {
			t.Fatalf("%s missing from record/testdata/records", n)
		}
		out = append(out, d)
	}
	return out
}

func dtls13Config() Config {
	cfg := defaultTestConfig()
	cfg.DTLS13 = true
	return cfg
}

// Rule 1 in DTLS 1.3: the cookie of a HelloRetryRequest comes back in the
// cookie extension of the second ClientHello, which pion v4 sends in two
// datagrams with the extension in the second. That fragment verifies the
// handshake; the first, which holds the random, only routes it.
func TestHelloRetryCookieInTheSecondFragment(t *testing.T) {
	d := capturedNamed(t, "pion-v4-dtls13-00-client-ClientHello-frag0.hex", "pion-v4-dtls13-01-server-ServerHello-frag0.hex",
		"pion-v4-dtls13-02-client-ClientHello-frag0.hex", "pion-v4-dtls13-03-client-ClientHello-frag1175.hex",
		"pion-v4-dtls13-04-server-ServerHello-frag0.hex")
	ch1, hrr, frag0, frag1, sh := d[0], d[1], d[2], d[3], d[4]
	h := newHarness(t, dtls13Config())
	r := h.client(addr(1), ch1)
	a := r.Open
	if a == nil {
		t.Fatalf("ClientHello opened nothing: %+v", r)
	}
	if v := h.m.Server(h.now, a, hrr); !v.Forward || a.answered {
		t.Fatalf("HelloRetryRequest: %+v, answered %v", v, a.answered)
	}
	// A forged handshake of the same peer, opened after the real one: a
	// later fragment must still find the handshake it continues.
	forged := h.open(addr(1), 0x99)
	wantRoute(t, "first fragment", h.client(addr(1), frag0), a)
	if a.State() != Unverified {
		t.Fatalf("the first fragment, which holds no cookie, verified the handshake (%v)", a.State())
	}
	wantRoute(t, "second fragment", h.client(addr(1), frag1), a)
	if a.State() != Handshaking || h.m.Counters().Verified != 1 {
		t.Fatalf("the cookie echo in the second fragment left the handshake %v", a.State())
	}
	if v := h.m.Server(h.now, a, sh); !v.Forward || !a.DTLS13() {
		t.Fatalf("ServerHello %+v; DTLS 1.3 noted %v", v, a.DTLS13())
	}
	h.wantAlive(a, forged)
	if forged.State() != Unverified {
		t.Fatalf("the forged handshake is %v", forged.State())
	}
}

// A second fragment whose cookie is not the one the server asked for
// verifies nothing: the association stays unverified and is the one
// evicted first.
func TestWrongCookieInTheSecondFragment(t *testing.T) {
	d := capturedNamed(t, "pion-v4-dtls13-00-client-ClientHello-frag0.hex", "pion-v4-dtls13-01-server-ServerHello-frag0.hex",
		"pion-v4-dtls13-02-client-ClientHello-frag0.hex", "pion-v4-dtls13-03-client-ClientHello-frag1175.hex")
	ch1, hrr, frag0, frag1 := d[0], d[1], d[2], bytes.Clone(d[3])
	i := bytes.Index(frag1, []byte{0, 44}) // the cookie extension's type
	if i < 0 {
		t.Fatal("no cookie extension in the second fragment")
	}
	frag1[i+6] ^= 0xff // its first cookie byte
	cfg := dtls13Config()
	cfg.MaxUnverified = 2
	h := newHarness(t, cfg)
	a := h.client(addr(1), ch1).Open
	h.m.Server(h.now, a, hrr)
	h.client(addr(1), frag0)
	wantRoute(t, "second fragment", h.client(addr(1), frag1), a)
	if a.State() != Unverified {
		t.Fatalf("a wrong cookie made the handshake %v", a.State())
	}
	h.open(addr(2), 2)
	h.open(addr(3), 3)
	h.wantEnded(a, EndEvicted, false)
}

// Rule 9 in DTLS 1.3: the ServerHello names its CID in its second
// fragment, and the client's unified-header records carry it.
func TestDTLS13CIDInTheSecondServerHelloFragment(t *testing.T) {
	d := capturedNamed(t, "pion-v4-dtls13-cid-00-client-ClientHello-frag0.hex", "pion-v4-dtls13-cid-01-server-ServerHello-frag0.hex",
		"pion-v4-dtls13-cid-02-client-ClientHello-frag0.hex", "pion-v4-dtls13-cid-03-client-ClientHello-frag1175.hex",
		"pion-v4-dtls13-cid-04-server-ServerHello-frag0.hex", "pion-v4-dtls13-cid-05-server-ServerHello-frag1175.hex",
		"pion-v4-dtls13-cid-06-client-dtls13-ciphertext-epoch2.hex", "pion-v4-dtls13-cid-10-client-dtls13-ciphertext-epoch3.hex")
	cfg := dtls13Config()
	cfg.LearnCIDLength = true
	h := newHarness(t, cfg)
	a := h.client(addr(1), d[0]).Open
	h.m.Server(h.now, a, d[1])
	h.client(addr(1), d[2])
	h.client(addr(1), d[3])
	h.m.Server(h.now, a, d[4])
	if h.m.CIDLength() != 0 || a.ConnectionID() != "" {
		t.Fatalf("CID length %d, CID %x before the fragment that names it", h.m.CIDLength(), a.ConnectionID())
	}
	h.m.Server(h.now, a, d[5])
	if h.m.CIDLength() != 8 || len(a.ConnectionID()) != 8 {
		t.Fatalf("CID length %d, CID %x; want the ServerHello's 8 bytes learned", h.m.CIDLength(), a.ConnectionID())
	}
	wantRoute(t, "the client's Finished, from a new port", h.client(addr(9), d[6]), a)
	if !h.m.Completed(h.now, a) {
		t.Fatal("not completed")
	}
	wantRoute(t, "application data from its own port", h.client(addr(1), d[7]), a)
	forgedCID := bytes.Clone(d[7])
	forgedCID[1] ^= 1
	wantDrop(t, "an unknown CID", h.client(addr(1), forgedCID), DropUnknownCID)
	if a.Peer() != addr(1) {
		t.Fatalf("a record moved the peer to %v", a.Peer())
	}
}

// Rule 9 with CIDs its stack issues later (DTLS 1.3 NewConnectionID): they
// route to the association like the ServerHello's, an unverified
// association never takes one from a verified one, at most MaxIssuedCIDs
// are kept, and all go when it ends.
func TestIssuedCIDs(t *testing.T) {
	cfg := cidConfig()
	h := newHarness(t, cfg)
	a := h.establishCID(addr(1), 1, cidA)
	spare := []byte("spare-01")
	h.m.IssueCID(a, spare)
	h.m.IssueCID(a, spare) // the same CID twice is one
	wantRoute(t, "a spare CID from a new address", h.client(addr(5), cidRecord(spare)), a)
	if a.Peer() != addr(1) {
		t.Fatalf("a record moved the peer to %v", a.Peer())
	}
	if !h.m.Moved(a, addr(5)) || a.Peer() != addr(5) {
		t.Fatalf("the stack's move to the spare CID's address was refused: %v", a.Peer())
	}
	// A forged ClientHello's handshake whose stack issues the same CID
	// (short CIDs, a server without cookies) does not take it.
	f := h.open(addr(6), 6)
	h.m.IssueCID(f, spare)
	wantRoute(t, "the spare CID after a forged handshake issued it too", h.client(addr(7), cidRecord(spare)), a)
	h.m.IssueCID(a, []byte("short"))
	for i := range MaxIssuedCIDs + 2 {
		h.m.IssueCID(a, []byte{'c', 'i', 'd', '-', 'n', 'r', byte(i >> 8), byte(i)})
	}
	if len(a.issued) != MaxIssuedCIDs {
		t.Fatalf("%d issued CIDs kept, want %d", len(a.issued), MaxIssuedCIDs)
	}
	wantDrop(t, "the oldest issued CID, pushed out", h.client(addr(5), cidRecord(spare)), DropUnknownCID)
	wantRoute(t, "the ServerHello's CID", h.client(addr(5), cidRecord(cidA)), a)
	h.m.Closed(a)
	for cid := range h.m.cids {
		if h.m.cids[cid] == a {
			t.Fatalf("CID %x still routes to the closed association", cid)
		}
	}
}

// Rule 11: 0-RTT data right behind a ClientHello that offered it reaches
// the new handshake before its server answered; other protected records
// do not, and 0-RTT data verifies nothing.
func TestEarlyDataBehindTheClientHello(t *testing.T) {
	h := newHarness(t, dtls13Config())
	ch := clientHelloWith(1, extension(42, nil), extension(43, []byte{2, 0xfe, 0xfc}))
	r := h.client(addr(1), ch)
	a := r.Open
	if a == nil || !a.early {
		t.Fatalf("ClientHello with early_data: %+v", r)
	}
	early := unified(1, 40)
	wantRoute(t, "0-RTT data", h.client(addr(1), early), a)
	wantDrop(t, "an epoch-2 record before the server answered", h.client(addr(1), unified(2, 40)), DropUnproved)
	h.m.Server(h.now, a, serverHello())
	wantRoute(t, "0-RTT data after the answer", h.client(addr(1), early), a)
	if a.State() != Unverified {
		t.Fatalf("0-RTT data verified the handshake (%v)", a.State())
	}
	b := h.open(addr(2), 2) // no early_data
	wantDrop(t, "epoch-1 data to a handshake that offered none", h.client(addr(2), early), DropUnproved)
	h.wantAlive(a, b)
}

// clientHelloWith is a DTLS 1.3 first ClientHello with the given
// extensions.
func clientHelloWith(rnd byte, exts ...[]byte) []byte {
	body := []byte{0xfe, 0xfd}
	for range 32 {
		body = append(body, rnd)
	}
	body = append(body, 0, 0, 0, 2, 0x13, 0x01, 1, 0) // session id, cookie, suites, compression
	all := bytes.Join(exts, nil)
	body = append(body, byte(len(all)>>8), byte(len(all)))
	return handshakeMsg(1, 0, append(body, all...))
}

func extension(typ uint16, data []byte) []byte {
	return append([]byte{byte(typ >> 8), byte(typ), byte(len(data) >> 8), byte(len(data))}, data...)
}

// unified is a DTLS 1.3 record with the unified header at the given low
// epoch bits, a 16-bit sequence number and a length.
func unified(epochBits byte, n int) []byte {
	d := []byte{0x2c | epochBits&3, 0, 1, byte(n >> 8), byte(n)}
	return append(d, make([]byte, n)...)
}

func TestUnifiedHelpersAreWhatRecordReads(t *testing.T) {
	if r := record.Inspect(unified(1, 40)); r.Class != record.ClassCiphertext || r.Epoch != 1 {
		t.Fatalf("unified(1): %+v", r)
	}
	r := record.Inspect(clientHelloWith(1, extension(42, nil)))
	if ch, ok := r.ClientHello(clientHelloWith(1, extension(42, nil))); !ok || !ch.EarlyData {
		t.Fatalf("clientHelloWith early_data: %+v %v", ch, ok)
	}
}

// Rule 11 when the ClientHello spans two datagrams: a resumption's
// ClientHello with a post-quantum key share carries early_data in its
// second fragment, and the 0-RTT data behind it still reaches the
// handshake.
func TestEarlyDataOfAFragmentedClientHello(t *testing.T) {
	h := newHarness(t, dtls13Config())
	ch := clientHelloWith(1, extension(51, make([]byte, 1200)), extension(42, nil))
	first, second := split(ch, 1100)
	r := h.client(addr(1), first)
	a := r.Open
	if a == nil || a.early {
		t.Fatalf("first fragment: %+v, early %v; want an association that does not know yet", r, a != nil && a.early)
	}
	wantRoute(t, "second fragment", h.client(addr(1), second), a)
	if !a.early {
		t.Fatal("the early_data extension in the second fragment went unread")
	}
	wantRoute(t, "0-RTT data", h.client(addr(1), unified(1, 40)), a)
}

// split cuts the handshake message a datagram holds whole into two
// fragments, the first of n message bytes.
func split(d []byte, n int) ([]byte, []byte) {
	msg := d[25:]
	frag := func(from, to int) []byte {
		out := append([]byte(nil), d[:25]...)
		out[11], out[12] = byte((12+to-from)>>8), byte(12+to-from)
		out[19], out[20], out[21] = byte(from>>16), byte(from>>8), byte(from)
		out[22], out[23], out[24] = byte((to-from)>>16), byte((to-from)>>8), byte(to-from)
		return append(out, msg[from:to]...)
	}
	return frag(0, n), frag(n, len(msg))
}
