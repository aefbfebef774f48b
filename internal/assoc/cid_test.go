package assoc

import (
	"net/netip"
	"testing"
)

func cidConfig() Config {
	cfg := defaultTestConfig()
	cfg.CIDLength = 8
	return cfg
}

// establishCID establishes an association of peer whose server names cid.
func (h *harness) establishCID(peer netip.AddrPort, rnd byte, cid []byte) *Assoc[int] {
	h.t.Helper()
	a := h.open(peer, rnd)
	h.verify(a, rnd)
	h.m.Server(h.now, a, serverHelloCID(cid))
	if !h.m.Completed(h.now, a) || a.State() != Established || a.ConnectionID() != string(cid) {
		h.t.Fatalf("association %v, CID %x; want established with CID %x", a.State(), a.ConnectionID(), cid)
	}
	return a
}

var (
	cidA = []byte("cid-AAAA")
	cidB = []byte("cid-BBBB")
)

// Rule 9: a tls12_cid record goes to the association whose server named
// its CID, whatever its source; an unknown CID goes nowhere, and neither
// does a closed association's.
func TestCIDRoutesWhateverTheSource(t *testing.T) {
	h := newHarness(t, cidConfig())
	a := h.establishCID(addr(1), 1, cidA)
	b := h.establishCID(addr(2), 2, cidB)
	wantRoute(t, "from its own address", h.client(addr(1), cidRecord(cidA)), a)
	wantRoute(t, "from a new port", h.client(addr(9), cidRecord(cidA)), a)
	wantRoute(t, "from the other client's address", h.client(addr(2), cidRecord(cidA)), a)
	wantDrop(t, "an unknown CID", h.client(addr(1), cidRecord([]byte("cid-none"))), DropUnknownCID)
	wantDrop(t, "an epoch-0 heartbeat behind the CID record",
		h.client(addr(9), append(cidRecord(cidA), dtlsRecord(24, 0, []byte{1, 0, 1, 0})...)), DropInvalid)
	if a.Peer() != addr(1) {
		t.Fatalf("a record the stack has not authenticated moved the peer to %v", a.Peer())
	}
	h.m.Closed(a)
	h.wantEnded(a, EndClosed, true)
	wantDrop(t, "the closed association's late record, from a new port", h.client(addr(7), cidRecord(cidA)), DropUnknownCID)
	wantRoute(t, "the other client's", h.client(addr(7), cidRecord(cidB)), b)
	if c := h.m.Counters(); c.CIDsBound != 2 || c.Dropped[DropUnknownCID] != 2 {
		t.Fatalf("counters %+v", c)
	}
}

// Rule 9: the CID proves the address of a handshake without cookies, as a
// cookie echo does: only the client its server answered knows it.
func TestCIDVerifiesAnAnsweredHandshake(t *testing.T) {
	h := newHarness(t, cidConfig())
	a := h.open(addr(1), 1)
	h.m.Server(h.now, a, serverHelloCID(cidA))
	if a.State() != Unverified {
		t.Fatalf("state %v", a.State())
	}
	wantRoute(t, "the client's Finished", h.client(addr(1), cidRecord(cidA)), a)
	if a.State() != Handshaking {
		t.Fatalf("state %v after the CID came back; want handshaking", a.State())
	}
}

// Rule 9: the stack moves the peer, and with it the address-keyed state:
// ClientHellos from the new address are its client's, a close quiets the
// new address, the old one is free.
func TestMovedFollowsTheStack(t *testing.T) {
	h := newHarness(t, cidConfig())
	a := h.establishCID(addr(1), 1, cidA)
	if !h.m.Moved(a, addr(5)) || a.Peer() != addr(5) {
		t.Fatalf("Moved: peer %v", a.Peer())
	}
	if h.m.Sole(addr(1)) != nil || h.m.Sole(addr(5)) != a {
		t.Fatal("the sole route did not move with the peer")
	}
	wantDrop(t, "the old address's non-CID record", h.client(addr(1), appData), DropNoAssociation)
	r := h.client(addr(5), clientHello(2, nil))
	if r.Open == nil || !r.Open.Rehandshake() {
		t.Fatalf("a ClientHello from the new address: %+v; want a re-handshake beside the moved association", r)
	}
	fresh := h.client(addr(1), clientHello(3, nil))
	if fresh.Open == nil || fresh.Open.Rehandshake() {
		t.Fatalf("a ClientHello from the old address: %+v; want a new association", fresh)
	}
	h.m.Closed(a)
	if e := h.endsOf(a); len(e) != 1 || !e[0].quiet || e[0].a.Peer() != addr(5) {
		t.Fatalf("ends %+v; want the new address quiet", e)
	}
}

// Rule 9: a move never takes another established association's address;
// the mover goes on by CID and quiets nobody when it ends.
func TestMovedOntoAnOccupiedAddress(t *testing.T) {
	h := newHarness(t, cidConfig())
	a := h.establishCID(addr(1), 1, cidA)
	b := h.establish(addr(2), 2)
	if h.m.Moved(a, addr(2)) {
		t.Fatal("moved onto an address another association holds")
	}
	wantRoute(t, "the holder's own record", h.client(addr(2), appData), b)
	wantRoute(t, "the mover's CID record", h.client(addr(2), cidRecord(cidA)), a)
	h.m.Closed(a)
	h.wantEnded(a, EndClosed, false)
	h.wantAlive(b)
	if h.m.Sole(addr(2)) != b {
		t.Fatal("the holder lost its address")
	}
}

// Rule 9: only what the shell reports moves a peer; an association
// without a CID, or not established, does not move.
func TestMovedNeedsACIDAndAnEstablishedAssociation(t *testing.T) {
	h := newHarness(t, cidConfig())
	plain := h.establish(addr(1), 1)
	if h.m.Moved(plain, addr(3)) || plain.Peer() != addr(1) {
		t.Fatal("an association without a CID moved")
	}
	hs := h.open(addr(2), 2)
	h.verify(hs, 2)
	h.m.Server(h.now, hs, serverHelloCID(cidB))
	if h.m.Moved(hs, addr(4)) || hs.Peer() != addr(2) {
		t.Fatal("a handshake moved")
	}
}

// Rule 9, CIDs are the server's to choose: when two associations name the
// same one, the newer takes the route and the older keeps its address.
func TestCIDCollision(t *testing.T) {
	h := newHarness(t, cidConfig())
	a := h.establishCID(addr(1), 1, cidA)
	b := h.open(addr(2), 2)
	h.verify(b, 2)
	h.m.Server(h.now, b, serverHelloCID(cidA))
	wantRoute(t, "the shared CID", h.client(addr(1), cidRecord(cidA)), b)
	if a.ConnectionID() != "" || h.m.Counters().CIDCollisions != 1 {
		t.Fatalf("the older association kept CID %q", a.ConnectionID())
	}
	h.m.Closed(b)
	wantDrop(t, "the CID after the newer ended", h.client(addr(1), cidRecord(cidA)), DropUnknownCID)
	h.wantAlive(a)
}

// Rule 9: a server without cookies names a CID to a forged ClientHello's
// handshake too. While unverified, it never takes a verified association's
// CID: with short CIDs a flood of forged ClientHellos would otherwise take
// real clients' routes. It claims the CID once its client proves its
// address.
func TestUnverifiedHandshakeCannotTakeACID(t *testing.T) {
	h := newHarness(t, cidConfig())
	a := h.establishCID(addr(1), 1, cidA)
	forged := h.open(addr(2), 2)
	h.m.Server(h.now, forged, serverHelloCID(cidA)) // no cookie round
	wantRoute(t, "the live client's CID record", h.client(addr(1), cidRecord(cidA)), a)
	if a.ConnectionID() != string(cidA) || h.m.Counters().CIDCollisions != 0 {
		t.Fatal("an unverified handshake took a verified association's CID")
	}
	// The handshake's client answers from its address: proved, it claims
	// the CID, as a newer verified association would.
	wantRoute(t, "the answer to the server's flight", h.client(addr(2), clientKeyExchange), forged)
	wantRoute(t, "the CID record after", h.client(addr(1), cidRecord(cidA)), forged)
	if a.ConnectionID() != "" || h.m.Counters().CIDCollisions != 1 {
		t.Fatalf("after the proof: a's CID %q, collisions %d", a.ConnectionID(), h.m.Counters().CIDCollisions)
	}
	h.wantAlive(a)
}
