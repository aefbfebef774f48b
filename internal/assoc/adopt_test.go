package assoc

import (
	"net/netip"
	"testing"
	"time"

	"github.com/straydtls/straydtls/record"
)

func adoptConfig() Config {
	cfg := defaultTestConfig()
	cfg.CIDLength = record.CIDUnknown // as the relay's
	cfg.InferCompletion = true
	cfg.AdoptCID = true
	return cfg
}

// Rule 12: a CID record from an address with no association opens one
// that takes its client's protected records and completes when its
// server answers with a protected record; before that it is an
// Unverified association like any, and times out like one.
func TestAdoptCID(t *testing.T) {
	h := newHarness(t, adoptConfig())
	rec := cidRecord([]byte("cid-1234"))
	if r := h.m.Client(h.now, addr(1), rec); !r.Adoptable || r.N != 0 {
		t.Fatalf("a CID record from an unknown address: %+v; want it adoptable, routed nowhere yet", r)
	}
	r := h.adopt(addr(1))
	if r.Open == nil || !r.Open.Adopted() || r.Open.State() != Unverified {
		t.Fatalf("a CID record from an unknown address: %+v; want an adopted, unverified association", r)
	}
	a := r.Open
	wantRoute(t, "the client's next CID record", h.client(addr(1), rec), a)
	wantRoute(t, "its application data", h.client(addr(1), appData), a)
	if v := h.m.Server(h.now, a, appData); !v.Forward || a.State() != Established {
		t.Fatalf("the server's protected answer: %+v, state %v; want forwarded and established", v, a.State())
	}
	if c := h.m.Counters(); c.Adopted != 1 || c.Completed != 1 || c.Verified != 1 {
		t.Errorf("counters %+v: want one adopted, verified and completed", c)
	}

	// One the server never answers goes at the unverified timeout, quieting nobody.
	h.m.Client(h.now, addr(2), rec)
	b := h.adopt(addr(2)).Open
	h.now += int64(5 * time.Second)
	h.m.Expire(h.now)
	h.wantEnded(b, EndUnverifiedTimeout, false)

	// No CID, nothing to follow: a new address finds no connection.
	if r := h.client(addr(3), appData); r.Adoptable {
		t.Error("application data without a CID is adoptable")
	}
	// Without the rule, the same record is dropped.
	off := newHarness(t, func() Config { c := adoptConfig(); c.AdoptCID = false; return c }())
	if r := off.client(addr(1), rec); r.Adoptable || r.Drop != DropNoAssociation {
		t.Errorf("a CID record without AdoptCID: %+v", r)
	}
}

// A flood of forged CID records from random addresses costs what forged
// ClientHellos cost: at most MaxUnverified adopted associations, the
// oldest evicted, none of them verified.
func TestAdoptCIDFloodIsBounded(t *testing.T) {
	h := newHarness(t, adoptConfig())
	live := h.establish(addr(1), 1)
	for i := range 1000 {
		if h.m.Client(h.now, addr(100+i), cidRecord([]byte{byte(i), byte(i >> 8), 3, 4})).Adoptable {
			h.adopt(addr(100 + i))
		}
	}
	if g := h.m.Gauges(); g.Unverified != h.m.Config().MaxUnverified || g.Established != 1 {
		t.Fatalf("gauges after the flood: %+v; want the unverified cap full and the live association kept", g)
	}
	h.wantAlive(live)
}

// adopt has the machine adopt peer's last datagram, as a shell does for an
// Adoptable route, giving a new association the next handle.
func (h *harness) adopt(peer netip.AddrPort) Route[int] {
	r := h.m.Adopt(h.now, peer)
	if r.Open != nil {
		h.handl++
		r.Open.Handle = h.handl
	}
	return r
}

// A forged CID record at a real client's address, before the client
// starts a handshake there, takes nothing from it: the client's
// ClientHello opens an association of its own and ends the adoption, and
// none of the client's records reaches the adopted association's server
// socket.
func TestForgedAdoptionYieldsToClientHello(t *testing.T) {
	h := newHarness(t, adoptConfig())
	h.m.Client(h.now, addr(1), cidRecord([]byte("forged00")))
	forged := h.adopt(addr(1)).Open
	if forged == nil {
		t.Fatal("the forged CID record was not adopted")
	}
	real := h.open(addr(1), 1)
	if real == forged {
		t.Fatal("the client's ClientHello went to the forged adoption")
	}
	h.wantEnded(forged, EndEvicted, false)
	h.verify(real, 1)
	h.m.Server(h.now, real, serverHello())
	h.m.Completed(h.now, real)
	wantRoute(t, "the client's application data", h.client(addr(1), appData), real)
}
