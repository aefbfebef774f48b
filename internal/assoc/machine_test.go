package assoc

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

type ended struct {
	a     *Assoc[int]
	why   EndReason
	quiet bool
}

type harness struct {
	t     *testing.T
	m     *Machine[int]
	ends  []ended
	now   int64
	handl int
}

func defaultTestConfig() Config {
	return Config{
		MaxUnverified:     8,
		UnverifiedTimeout: 5 * time.Second,
		MaxHandshakes:     4,
		HandshakeTimeout:  30 * time.Second,
		Rehandshake:       true,
	}
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t}
	m, err := New[int](cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	return h
}

// client sends d from peer and returns the route; a new association gets
// the next handle number.
func (h *harness) client(peer netip.AddrPort, d []byte) Route[int] {
	r := h.m.Client(h.now, peer, d)
	if r.Open != nil {
		h.handl++
		r.Open.Handle = h.handl
	}
	return r
}

// open sends a first ClientHello with random rnd and returns the new association.
func (h *harness) open(peer netip.AddrPort, rnd byte) *Assoc[int] {
	h.t.Helper()
	r := h.client(peer, clientHello(rnd, nil))
	if r.Open == nil || r.N != 1 || r.To[0] != r.Open {
		h.t.Fatalf("ClientHello %d from %v opened nothing: %+v", rnd, peer, r)
	}
	return r.Open
}

// verify runs the cookie exchange on a.
func (h *harness) verify(a *Assoc[int], rnd byte) {
	h.t.Helper()
	cookie := []byte{rnd, 0xc0, 0x0c, 0x1e}
	if v := h.m.Server(h.now, a, helloVerify(cookie)); !v.Forward {
		h.t.Fatal("HelloVerifyRequest not forwarded")
	}
	r := h.client(a.Peer(), clientHello(rnd, cookie))
	if r.N != 1 || r.To[0] != a || a.State() != Handshaking {
		h.t.Fatalf("cookie echo: route %+v, state %v; want it delivered and the association verified", r, a.State())
	}
}

// establish runs a whole handshake from peer and reports it completed.
func (h *harness) establish(peer netip.AddrPort, rnd byte) *Assoc[int] {
	h.t.Helper()
	a := h.open(peer, rnd)
	h.verify(a, rnd)
	h.m.Server(h.now, a, serverHello())
	if !h.m.Completed(h.now, a) || a.State() != Established {
		h.t.Fatalf("completed handshake is %v", a.State())
	}
	return a
}

// ended takes what the machine ended since the last look into h.ends,
// which keeps everything ended since the test last cleared it, and
// returns it.
func (h *harness) ended() []ended {
	for _, e := range h.m.Ended(nil) {
		h.ends = append(h.ends, ended{e.Assoc, e.Why, e.Quiet})
	}
	return h.ends
}

func (h *harness) endsOf(a *Assoc[int]) []ended {
	var out []ended
	for _, e := range h.ended() {
		if e.a == a {
			out = append(out, e)
		}
	}
	return out
}

func (h *harness) wantEnded(a *Assoc[int], why EndReason, quiet bool) {
	h.t.Helper()
	e := h.endsOf(a)
	if len(e) != 1 || e[0].why != why || e[0].quiet != quiet || a.State() != Ended {
		h.t.Fatalf("association %d ends %+v, state %v; want one end, %v, quiet %v", a.Handle, e, a.State(), why, quiet)
	}
}

func (h *harness) wantAlive(as ...*Assoc[int]) {
	h.t.Helper()
	for _, a := range as {
		if e := h.endsOf(a); len(e) != 0 || a.State() == Ended {
			h.t.Fatalf("association %d (%v) ended: %+v", a.Handle, a.State(), e)
		}
	}
}

func wantRoute(t *testing.T, what string, r Route[int], to ...*Assoc[int]) {
	t.Helper()
	if r.N != len(to) {
		t.Fatalf("%s: delivered to %d associations (%v, drop %v); want %d", what, r.N, r.To[:r.N], r.Drop, len(to))
	}
	for i, a := range to {
		if r.To[i] != a {
			t.Fatalf("%s: target %d is %v, want %v", what, i, r.To[i], a)
		}
	}
}

func wantDrop(t *testing.T, what string, r Route[int], why Drop) {
	t.Helper()
	if r.N != 0 || r.Drop != why || r.Open != nil {
		t.Fatalf("%s: route %+v; want dropped as %v", what, r, why)
	}
}

// Rule 1: a ClientHello opens an Unverified association; only the echo of
// the server's cookie with the same random verifies it.
func TestStagedAdmission(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	p := addr(1)
	a := h.open(p, 7)
	if a.State() != Unverified {
		t.Fatalf("new association is %v", a.State())
	}
	h.m.Server(h.now, a, helloVerify([]byte("cookie")))
	wantRoute(t, "a retransmitted first ClientHello", h.client(p, clientHello(7, nil)), a)
	wantRoute(t, "a wrong cookie", h.client(p, clientHello(7, []byte("guess!"))), a)
	wantDrop(t, "flight 5 before the cookie echo", h.client(p, clientKeyExchange), DropUnproved)
	wantDrop(t, "a protected record before the cookie echo", h.client(p, finished), DropUnproved)
	if a.State() != Unverified {
		t.Fatalf("unproved datagrams made it %v", a.State())
	}
	wantRoute(t, "the cookie echo", h.client(p, clientHello(7, []byte("cookie"))), a)
	if a.State() != Handshaking {
		t.Fatalf("after the cookie echo: %v", a.State())
	}
	// A server that forgot the client after its cookie (Mbed TLS) would take
	// a protected record as a new connection if the echo was lost.
	wantDrop(t, "a protected record before the server answered", h.client(p, finished), DropUnproved)
	h.m.Server(h.now, a, serverHello())
	wantRoute(t, "flight 5", h.client(p, clientKeyExchange), a)
	wantRoute(t, "the client's Finished", h.client(p, finished), a)
	if g := h.m.Gauges(); g.Unverified != 0 || g.Handshaking != 1 || g.Peers != 1 {
		t.Fatalf("gauges %+v", g)
	}
}

// Rule 1 for a server that sends no cookie: the client's answer to the
// server's first flight verifies the association.
func TestAdmissionWithoutCookie(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	p := addr(1)
	a := h.open(p, 7)
	wantDrop(t, "flight 5 before the server answered", h.client(p, clientKeyExchange), DropUnproved)
	h.m.Server(h.now, a, serverHello())
	wantRoute(t, "flight 5 after the ServerHello", h.client(p, clientKeyExchange), a)
	if a.State() != Handshaking {
		t.Fatalf("answering the first flight left it %v", a.State())
	}
}

// Rule 1: unverified associations time out on their own, short timeout.
func TestUnverifiedTimeout(t *testing.T) {
	cfg := defaultTestConfig()
	h := newHarness(t, cfg)
	a := h.open(addr(1), 1)
	b := h.open(addr(2), 2)
	h.verify(b, 2)
	h.now = int64(cfg.UnverifiedTimeout) - 1
	h.m.Expire(h.now)
	h.wantAlive(a, b)
	h.now = int64(cfg.UnverifiedTimeout)
	h.m.Expire(h.now)
	h.wantEnded(a, EndUnverifiedTimeout, false)
	h.wantAlive(b)
	if due, ok := h.m.NextDue(); !ok || due != int64(cfg.HandshakeTimeout) {
		t.Fatalf("next due %v %v; want the verified handshake's timeout %v", due, ok, cfg.HandshakeTimeout)
	}
	h.now = int64(cfg.HandshakeTimeout)
	h.m.Expire(h.now)
	h.wantEnded(b, EndHandshakeTimeout, false)
	if g := h.m.Gauges(); g != (Gauges{}) {
		t.Fatalf("gauges %+v after everything ended", g)
	}
}

// Rule 1: at the unverified cap the oldest unverified association is
// evicted and the new ClientHello admitted; verified ones are never touched.
func TestSYNCache(t *testing.T) {
	cfg := defaultTestConfig()
	cfg.MaxUnverified = 3
	h := newHarness(t, cfg)
	real := h.open(addr(100), 100)
	h.verify(real, 100)
	var forged []*Assoc[int]
	for i := range 50 {
		h.now += ms(1)
		forged = append(forged, h.open(addr(i), byte(i)))
	}
	for _, a := range forged[:47] {
		h.wantEnded(a, EndEvicted, false)
	}
	h.wantAlive(forged[47], forged[48], forged[49], real)
	if g := h.m.Gauges(); g.Unverified != 3 || g.Handshaking != 1 {
		t.Fatalf("gauges %+v", g)
	}
	if c := h.m.Counters(); c.Refused != 0 || c.Opened != 51 {
		t.Fatalf("counters %+v: a ClientHello was refused", c)
	}
}

// Rule 1: a cookie echo that finds the verified caps full is dropped, and
// admitted once room is made.
func TestVerifiedCaps(t *testing.T) {
	cfg := defaultTestConfig()
	cfg.MaxHandshakes = 1
	h := newHarness(t, cfg)
	a := h.open(addr(1), 1)
	h.verify(a, 1)
	b := h.open(addr(2), 2)
	h.m.Server(h.now, b, helloVerify([]byte{9}))
	wantDrop(t, "cookie echo at the cap", h.client(addr(2), clientHello(2, []byte{9})), DropRefused)
	if b.State() != Unverified {
		t.Fatalf("refused echo left it %v", b.State())
	}
	h.m.Completed(h.now, a)
	wantRoute(t, "cookie echo after room", h.client(addr(2), clientHello(2, []byte{9})), b)
	if b.State() != Handshaking {
		t.Fatalf("state %v", b.State())
	}
}

// Rule 2: a forged ClientHello from a live client's addr:port opens an
// association of its own; it cannot take the real client's re-handshake,
// and the live association is untouched until the real one completes.
func TestForgedClientHelloCannotCaptureRehandshake(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	p := addr(1)
	live := h.establish(p, 1)
	forged := h.open(p, 66)
	if !forged.Rehandshake() {
		t.Fatal("opened beside an established association but not marked a re-handshake")
	}
	wantRoute(t, "application data with a forged handshake pending", h.client(p, appData), live)
	// The client reboots: new random.
	reboot := h.open(p, 2)
	h.verify(reboot, 2)
	h.m.Server(h.now, reboot, serverHello())
	wantRoute(t, "flight 5 of the reboot", h.client(p, clientKeyExchange), reboot)
	wantRoute(t, "the reboot's Finished", h.client(p, finished), live, reboot)
	h.wantAlive(live, forged, reboot)
	h.m.Completed(h.now, reboot)
	h.wantEnded(live, EndRetired, false)
	if !live.Retired() || h.m.Server(h.now, live, appData).Forward {
		t.Fatal("the retired association's server still reaches the client")
	}
	wantRoute(t, "data after the reboot", h.client(p, appData), reboot)
	h.wantAlive(forged)
	if c := h.m.Counters(); c.Replaced != 1 || c.Rehandshakes != 2 {
		t.Fatalf("counters %+v", c)
	}
}

// Rule 2: a copy of a handshake's own ClientHello goes to that handshake.
func TestClientHelloCopiesGoHome(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	p := addr(1)
	live := h.establish(p, 1)
	wantRoute(t, "a late copy of the live handshake's ClientHello", h.client(p, clientHello(1, nil)), live)
	pending := h.open(p, 2)
	wantRoute(t, "a retransmission of the pending ClientHello", h.client(p, clientHello(2, nil)), pending)
	if c := h.m.Counters(); c.Opened != 2 {
		t.Fatalf("copies opened associations: %+v", c)
	}
}

// Rule 2: at most MaxPerPeer handshakes per peer; the oldest unverified
// goes first, and a peer whose handshakes are all verified refuses more.
func TestPerPeerBound(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	p := addr(1)
	first := h.open(p, 1)
	h.verify(first, 1)
	var rest []*Assoc[int]
	for i := range MaxPerPeer {
		rest = append(rest, h.open(p, byte(10+i)))
	}
	h.wantEnded(rest[0], EndEvicted, false)
	h.wantAlive(first, rest[1], rest[2], rest[3])
	// Four verified handshakes on one peer: a server without cookies
	// answered each, and a protected record answered all of them.
	cfg := defaultTestConfig()
	cfg.MaxHandshakes = 0
	h = newHarness(t, cfg)
	for i := range MaxPerPeer {
		h.m.Server(h.now, h.open(p, byte(i)), serverHello())
	}
	h.client(p, finished)
	wantDrop(t, "a fifth handshake beside four verified ones", h.client(p, clientHello(9, nil)), DropRefused)
	if h.m.Gauges().Handshaking != MaxPerPeer || len(h.ended()) != 0 {
		t.Fatalf("gauges %+v ends %+v", h.m.Gauges(), h.ended())
	}
}

// Rule 2: a later ClientHello fragment goes with the newest handshake, and
// opens one only for a peer without.
func TestLaterFragments(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	p := addr(1)
	r := h.client(p, laterFragment())
	if r.Open == nil {
		t.Fatalf("a later fragment from a new peer opened nothing: %+v", r)
	}
	a := r.Open
	wantRoute(t, "its first fragment", h.client(p, clientHello(5, nil)), a)
	wantRoute(t, "the same random again", h.client(p, clientHello(5, nil)), a)
	wantRoute(t, "another later fragment", h.client(p, laterFragment()), a)
}

// Rule 3: only an association that completed, then ended by a local
// event, quiets its client; never one whose handshake died, whatever ended it.
func TestOnlyCompletedAssociationsQuiet(t *testing.T) {
	cfg := defaultTestConfig()
	cfg.MaxUnverified = 1
	cfg.EndOnServerAlert = true
	h := newHarness(t, cfg)
	died := []*Assoc[int]{}
	a := h.open(addr(1), 1)
	h.open(addr(2), 2) // evicts a
	died = append(died, a)
	b := h.open(addr(3), 3)
	h.verify(b, 3)
	h.m.Closed(b) // the stack gave up on the handshake
	died = append(died, b)
	c := h.open(addr(4), 4)
	h.m.Server(h.now, c, dtlsRecord(21, 0, []byte{2, 40})) // the server refused it
	died = append(died, c)
	for _, d := range died {
		if e := h.endsOf(d); len(e) != 1 || e[0].quiet {
			t.Fatalf("a handshake that died quieted its peer: %+v", e)
		}
	}
	e := h.establish(addr(5), 5)
	h.m.Closed(e)
	h.wantEnded(e, EndClosed, true)
	f := h.establish(addr(6), 6)
	h.m.Server(h.now, f, encryptedAlert)
	h.wantEnded(f, EndServerAlert, true)
}

// Rule 3: closing the established association while a verified
// re-handshake of the same client runs does not quiet the client (its
// handshake would starve); an unverified one does not hold it back.
func TestQuietWaitsForProvedHandshakes(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	live := h.establish(addr(1), 1)
	h.verify(h.open(addr(1), 2), 2)
	h.m.Closed(live)
	h.wantEnded(live, EndClosed, false)

	live = h.establish(addr(2), 1)
	h.open(addr(2), 2) // unverified: maybe forged
	h.m.Closed(live)
	h.wantEnded(live, EndClosed, true)
}

// Rule 4: after the server's close, a forged ClientHello that the server
// answers only with a HelloVerifyRequest does not let the old
// association's late records through: they stay dropped.
func TestHelloVerifyRequestIsNotAnAnswer(t *testing.T) {
	cfg := defaultTestConfig()
	cfg.EndOnServerAlert = true
	cfg.InferCompletion = true
	h := newHarness(t, cfg)
	p := addr(1)
	old := h.open(p, 1)
	h.verify(old, 1)
	h.m.Server(h.now, old, serverHello())
	h.m.Server(h.now, old, finished) // inferred completion
	if old.State() != Established {
		t.Fatalf("state %v", old.State())
	}
	h.m.Server(h.now, old, encryptedAlert)
	h.wantEnded(old, EndServerAlert, true)
	forged := h.open(p, 99)
	h.m.Server(h.now, forged, helloVerify([]byte("c")))
	wantDrop(t, "late close_notify", h.client(p, encryptedAlert), DropUnproved)
	wantDrop(t, "late application data", h.client(p, appData), DropUnproved)
	wantDrop(t, "late flight 5", h.client(p, clientKeyExchange), DropUnproved)
}

// Rule 5: an established association drops epoch-0 alerts and application
// data, and takes everything else, retransmitted flights included.
func TestEstablishedDropsWhatCannotBeValid(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	p := addr(1)
	live := h.establish(p, 1)
	wantDrop(t, "plaintext close_notify", h.client(p, plainCloseNotify), DropInvalid)
	wantDrop(t, "plaintext application data", h.client(p, plainAppData), DropInvalid)
	wantDrop(t, "plaintext heartbeat", h.client(p, dtlsRecord(24, 0, []byte{1, 0, 1, 0})), DropInvalid)
	wantDrop(t, "unassigned type 27", h.client(p, dtlsRecord(27, 0, nil)), DropInvalid)
	wantDrop(t, "epoch-0 ACK (DTLS 1.2 stack)", h.client(p, dtlsRecord(26, 0, []byte{0, 0})), DropInvalid)
	wantDrop(t, "plaintext close_notify behind application data",
		h.client(p, append(append([]byte(nil), appData...), plainCloseNotify...)), DropInvalid)
	for name, d := range map[string][]byte{
		"retransmitted flight 5": clientKeyExchange, "change_cipher_spec": changeCipherSpec,
		"Finished": finished, "application data": appData, "encrypted alert": encryptedAlert,
		"STUN": stun, "empty": {}, "truncated alert": plainCloseNotify[:9],
	} {
		wantRoute(t, name, h.client(p, d), live)
	}
	h.wantAlive(live)
}

// Rule 6: a client's closing alert makes the association Closing; the
// client's traffic makes it established again, the server's restarts the
// linger; the linger ends it without a quiet period; at the cap a closing
// association is reclaimed.
func TestClosingLinger(t *testing.T) {
	cfg := defaultTestConfig()
	cfg.CloseLinger = time.Second
	cfg.MaxAssociations = 2
	cfg.MaxHandshakes = 0
	h := newHarness(t, cfg)
	a := h.establish(addr(1), 1)
	wantRoute(t, "close_notify", h.client(addr(1), encryptedAlert), a)
	if a.State() != Closing {
		t.Fatalf("after the client's alert: %v", a.State())
	}
	h.client(addr(1), appData)
	if a.State() != Established {
		t.Fatalf("traffic after a (forged) alert left it %v", a.State())
	}
	// The server's answer to what the client sent before its alert crosses
	// it: the linger starts again, the alert stands (GnuTLS answers no
	// close_notify, so nothing else would end the association).
	h.client(addr(1), encryptedAlert)
	h.now += int64(time.Second) / 2
	h.m.Server(h.now, a, appData)
	if a.State() != Closing {
		t.Fatalf("server traffic after the alert left it %v", a.State())
	}
	h.now += int64(time.Second) * 3 / 4
	h.m.Expire(h.now)
	h.wantAlive(a) // a second after the alert, but not after the server's last datagram
	h.now += int64(time.Second) / 4
	h.m.Expire(h.now)
	h.wantEnded(a, EndLinger, false)

	b := h.establish(addr(2), 2)
	c := h.establish(addr(3), 3)
	h.client(addr(2), encryptedAlert)
	d := h.open(addr(4), 4)
	h.verify(d, 4) // at the cap: b is reclaimed
	h.wantEnded(b, EndReclaimed, false)
	h.wantAlive(c, d)
	e := h.open(addr(5), 5)
	h.m.Server(h.now, e, helloVerify([]byte{1}))
	wantDrop(t, "cookie echo at the cap with nothing closing", h.client(addr(5), clientHello(5, []byte{1})), DropRefused)
}

// Rule 7: with inferred completion, a handshake completes only once it is
// verified and its server sent a protected record, in either order.
func TestInferredCompletion(t *testing.T) {
	cfg := defaultTestConfig()
	cfg.InferCompletion = true
	h := newHarness(t, cfg)
	// Full handshake with a cookie: verified, then the server's Finished.
	a := h.open(addr(1), 1)
	h.verify(a, 1)
	h.m.Server(h.now, a, serverHello())
	if a.State() != Handshaking {
		t.Fatal("a ServerHello completed the handshake")
	}
	h.m.Server(h.now, a, finished)
	if a.State() != Established {
		t.Fatalf("state %v after the server's Finished", a.State())
	}
	// Resumption without a cookie: the server's Finished comes first, then
	// the client's answer proves the address.
	b := h.open(addr(2), 2)
	h.m.Server(h.now, b, serverHello())
	h.m.Server(h.now, b, finished)
	if b.State() != Unverified {
		t.Fatalf("a protected record from the server completed an unproved handshake: %v", b.State())
	}
	h.client(addr(2), changeCipherSpec)
	if b.State() != Handshaking {
		t.Fatalf("state %v after the client's answer", b.State())
	}
	h.m.Server(h.now, b, appData)
	if b.State() != Established {
		t.Fatalf("state %v", b.State())
	}
	// A forged ClientHello beside a live association, answered by a
	// cookie-less server with protected records, replaces nothing.
	c := h.open(addr(1), 66)
	h.m.Server(h.now, c, serverHello())
	h.m.Server(h.now, c, finished)
	h.wantAlive(a, c)
	if c.State() != Unverified {
		t.Fatalf("forged handshake is %v", c.State())
	}
}

func TestIdleTimeout(t *testing.T) {
	cfg := defaultTestConfig()
	cfg.IdleTimeout = 10 * time.Second
	h := newHarness(t, cfg)
	a := h.establish(addr(1), 1)
	h.now += int64(9 * time.Second)
	h.client(addr(1), appData)
	h.now += int64(9 * time.Second)
	h.m.Expire(h.now)
	h.wantAlive(a)
	h.m.Server(h.now, a, appData)
	h.now += int64(10*time.Second) - 1
	h.m.Expire(h.now)
	h.wantAlive(a)
	h.now++
	h.m.Expire(h.now)
	h.wantEnded(a, EndIdle, false)
}

func TestRehandshakeOff(t *testing.T) {
	cfg := defaultTestConfig()
	cfg.Rehandshake = false
	h := newHarness(t, cfg)
	live := h.establish(addr(1), 1)
	wantRoute(t, "a new random, re-handshakes off", h.client(addr(1), clientHello(2, nil)), live)
	if h.m.Gauges().Unverified != 0 {
		t.Fatal("opened a handshake with re-handshakes off")
	}
}

func TestStopAccepting(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	live := h.establish(addr(1), 1)
	pending := h.open(addr(2), 2)
	h.m.StopAccepting()
	wantDrop(t, "new peer", h.client(addr(3), clientHello(3, nil)), DropNotAccepting)
	wantRoute(t, "live peer", h.client(addr(1), appData), live)
	wantRoute(t, "pending peer's retransmission", h.client(addr(2), clientHello(2, nil)), pending)
	wantDrop(t, "new random beside a live one", h.client(addr(1), clientHello(9, nil)), DropNotAccepting)
}

func TestConfigValidation(t *testing.T) {
	for i, mod := range []func(*Config){
		func(c *Config) { c.MaxUnverified = 0 },
		func(c *Config) { c.UnverifiedTimeout = 0 },
		func(c *Config) { c.HandshakeTimeout = -1 },
		func(c *Config) { c.MaxHandshakes = -1 },
		func(c *Config) { c.IdleTimeout = -1 },
	} {
		cfg := defaultTestConfig()
		mod(&cfg)
		if _, err := New[int](cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("case %d: err %v", i, err)
		}
	}
}

func TestClientDoesNotAllocateForKnownPeers(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	h.establish(addr(1), 1)
	h.open(addr(2), 2)
	again := clientHello(2, nil)
	if n := testing.AllocsPerRun(1000, func() {
		h.m.Client(h.now, addr(1), appData)
		h.m.Client(h.now, addr(1), clientKeyExchange)
		h.m.Client(h.now, addr(2), again)
	}); n != 0 {
		t.Fatalf("%v allocations per datagram", n)
	}
}

func (e ended) String() string { return fmt.Sprintf("{%d %v quiet=%v}", e.a.Handle, e.why, e.quiet) }

// Rule 4: a DTLS 1.3 HelloRetryRequest asks for a cookie; it does not
// answer the ClientHello, so it lets nothing protected through.
func TestHelloRetryRequestIsNotAnAnswer(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	a := h.open(addr(1), 1)
	h.m.Server(h.now, a, helloRetry())
	wantDrop(t, "a protected record after a HelloRetryRequest", h.client(addr(1), finished), DropUnproved)
	h.m.Server(h.now, a, serverHello())
	wantRoute(t, "a protected record after the ServerHello", h.client(addr(1), finished), a)
}

// Rule 8: once the client proved its address for one handshake, or opened
// a newer one, a cookie request for an older unverified handshake (a forged
// ClientHello's) is withheld: the client would restart its real handshake
// with a cookie its server never issued.
func TestStaleCookieRequestsWithheld(t *testing.T) {
	h := newHarness(t, defaultTestConfig())
	p := addr(1)
	forged := h.open(p, 66)
	real := h.open(p, 1)
	if v := h.m.Server(h.now, forged, helloVerify([]byte("forged"))); v.Forward {
		t.Fatal("the older handshake's cookie request reached the client")
	}
	h.verify(real, 1) // its own cookie request goes out
	late := h.open(p, 77)
	if v := h.m.Server(h.now, late, helloVerify([]byte("late"))); v.Forward {
		t.Fatal("a cookie request reached a client in the middle of a verified handshake")
	}
	if v := h.m.Server(h.now, late, serverHello()); !v.Forward {
		t.Fatal("withheld more than cookie requests")
	}
	if c := h.m.Counters(); c.CookiesWithheld != 2 {
		t.Fatalf("counters %+v", c)
	}
}
