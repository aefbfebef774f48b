package assoc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/straydtls/straydtls/record"
)

// The model test drives a Machine with random events (client datagrams of
// every kind from a few peers, forged ones among them, server datagrams,
// completions, closes, clock steps) and checks after every event that the
// decision is what the rules in doc.go say, from a snapshot of the state
// before the event, and that the Machine's bookkeeping is consistent.

type snap struct {
	a             *Assoc[int]
	state         State
	random        [32]byte
	hasRandom     bool
	answered      bool
	opened, since int64
	last          int64
}

type model struct {
	t     testing.TB
	h     *harness
	cfg   Config
	peers []netip.AddrPort
	all   []*Assoc[int] // every association ever opened, for picking
	// answered is the model's own record of rule 4: the server sent the
	// association something other than a request for a cookie.
	answered map[*Assoc[int]]bool
	// Rule 9, the model's own record: the CID each association's server
	// named, the association each CID routes to, and the associations
	// that moved onto an address another one held.
	cidOf    map[*Assoc[int]]string
	byCID    map[string]*Assoc[int]
	detached map[*Assoc[int]]bool
	log      []string
}

func newModel(t testing.TB, cfg Config, npeers int) *model {
	tt, ok := t.(*testing.T)
	if !ok {
		tt = &testing.T{}
	}
	mo := &model{t: t, cfg: cfg, answered: map[*Assoc[int]]bool{},
		cidOf: map[*Assoc[int]]string{}, byCID: map[string]*Assoc[int]{}, detached: map[*Assoc[int]]bool{}}
	mo.h = &harness{t: tt}
	m, err := New[int](cfg)
	if err != nil {
		t.Fatal(err)
	}
	mo.h.m = m
	for i := range npeers {
		mo.peers = append(mo.peers, addr(i))
	}
	return mo
}

func (mo *model) fail(format string, args ...any) {
	mo.t.Helper()
	n := len(mo.log)
	from := max(0, n-30)
	mo.t.Fatalf("%s\nlast events:\n  %s", fmt.Sprintf(format, args...), joinLines(mo.log[from:]))
}

func joinLines(l []string) string {
	var b bytes.Buffer
	for _, s := range l {
		b.WriteString(s)
		b.WriteString("\n  ")
	}
	return b.String()
}

func (mo *model) snapshot(peer netip.AddrPort) (live *snap, hs []snap) {
	p := mo.h.m.peers[peer]
	if p == nil {
		return nil, nil
	}
	take := func(a *Assoc[int]) snap {
		return snap{a, a.state, a.random, a.hasRandom, mo.answered[a], a.opened, a.since, a.last}
	}
	if p.live != nil {
		s := take(p.live)
		live = &s
	}
	for i := 0; i < p.n; i++ {
		hs = append(hs, take(p.hs[i]))
	}
	return live, hs
}

// cookieOf is the cookie the model's server sends on an association.
func cookieOf(a *Assoc[int]) []byte { return []byte{byte(a.Handle), byte(a.Handle >> 8), 0xc0} }

// clientDatagram picks what a client (or someone forging its address)
// sends.
func (mo *model) clientDatagram(peer netip.AddrPort, kind, arg byte) []byte {
	_, hs := mo.snapshot(peer)
	switch kind % 20 {
	case 0, 1:
		return clientHello(1+arg%6, nil) // a small set of randoms, so copies happen
	case 2:
		if len(hs) > 0 { // the right cookie echo for one of its handshakes
			s := hs[int(arg)%len(hs)]
			if s.hasRandom {
				return clientHello(s.random[0], cookieOf(s.a))
			}
		}
		return clientHello(1+arg%6, []byte{arg})
	case 3:
		return clientHello(1+arg%6, []byte{0xba, 0xd0, arg}) // a guessed cookie
	case 4:
		return laterFragment()
	case 5:
		return clientKeyExchange
	case 6:
		return changeCipherSpec
	case 7:
		return finished
	case 8:
		return appData
	case 9:
		return encryptedAlert
	case 10:
		if arg%2 == 0 {
			return plainFatalAlert
		}
		return plainCloseNotify
	case 11:
		return plainAppData
	case 12:
		return stun
	case 13:
		return nil
	case 15:
		return dtlsRecord(24, 0, []byte{1, 0, 1, 0}) // heartbeat: no stack takes it at epoch 0
	case 16:
		// A plaintext alert behind a protected record: stacks act on each.
		alert := plainCloseNotify
		if arg%2 == 0 {
			alert = plainFatalAlert
		}
		return append(append([]byte(nil), appData...), alert...)
	case 17:
		return dtlsRecord(26, 0, []byte{0, 0}) // an epoch-0 ACK: DTLS 1.3 only
	case 18, 19:
		return cidRecord(modelCID(1 + arg%5)) // CID 5 is never bound
	default:
		return []byte{22, 0xfe, 0xfd, 0, 0} // malformed
	}
}

// serverDatagram picks what a server sends, and whether it answers the
// ClientHello (rule 4) rather than ask for a cookie.
func serverDatagram(a *Assoc[int], kind byte) ([]byte, bool) {
	switch kind % 8 {
	case 0:
		return helloVerify(cookieOf(a)), false
	case 7:
		return helloRetry(), false
	}
	return serverAnswer(kind), true
}

// modelCID is the k-th of the few CIDs the model's servers name, so two
// associations often name the same.
func modelCID(k byte) []byte { return bytes.Repeat([]byte{k}, 8) }

func serverAnswer(kind byte) []byte {
	switch kind % 8 {
	case 1:
		if kind/8%3 != 0 {
			return serverHelloCID(modelCID(1 + kind/24%4))
		}
		return serverHello()
	case 2:
		return finished
	case 3:
		return appData
	case 4:
		return encryptedAlert
	case 5:
		return dtlsRecord(21, 0, []byte{2, 40}) // plaintext fatal alert
	case 6:
		if kind/8%2 == 0 {
			return serverHelloCID(modelCID(1 + kind/16%4))
		}
	}
	return changeCipherSpec
}

func (mo *model) pick(arg byte) *Assoc[int] {
	var alive []*Assoc[int]
	for _, a := range mo.all {
		if a.state != Ended {
			alive = append(alive, a)
		}
	}
	if len(alive) == 0 {
		return nil
	}
	return alive[int(arg)%len(alive)]
}

// step runs one event chosen by three bytes.
func (mo *model) step(op, x, y byte) {
	h := mo.h
	h.ends = h.ended()[:0]
	switch op % 8 {
	case 0, 1, 2:
		mo.clientEvent(mo.peers[int(x)%len(mo.peers)], y, x/8)
	case 3, 4:
		a := mo.pick(x)
		if a == nil {
			return
		}
		if mo.cfg.CIDLength > 0 && x%3 == 0 {
			// Often a handshake without a CID yet, which a ServerHello
			// may give one (rule 9).
			for _, b := range mo.all {
				if mo.cidOf[b] == "" && (b.state == Unverified || b.state == Handshaking) {
					a = b
					break
				}
			}
		}
		mo.serverEvent(a, y)
	case 5:
		a := mo.pick(x)
		if a == nil {
			return
		}
		switch {
		case y%3 == 2 && mo.cfg.CIDLength > 0:
			// Mostly an established association with a CID, the ones
			// that move; now and then any, which must not.
			if x%4 != 0 {
				var movable []*Assoc[int]
				for _, b := range mo.all {
					if mo.cidOf[b] != "" && (b.state == Established || b.state == Closing) {
						movable = append(movable, b)
					}
				}
				if len(movable) > 0 {
					a = movable[int(x/4)%len(movable)]
				}
			}
			mo.movedEvent(a, mo.peers[int(y/3)%len(mo.peers)])
		case y%3 == 0:
			mo.closedEvent(a)
		default:
			// With CIDs, mostly a handshake whose server named one: the
			// associations rule 9 moves are established ones with a CID.
			if mo.cfg.CIDLength > 0 && x%4 != 0 {
				for _, b := range mo.all {
					if mo.cidOf[b] != "" && (b.state == Unverified || b.state == Handshaking) {
						a = b
						break
					}
				}
			}
			mo.completedEvent(a)
		}
	default:
		d := time.Duration(y) * 100 * time.Millisecond
		if op%8 == 7 {
			d = time.Duration(y%40) * time.Second
		}
		mo.expireEvent(h.now + int64(d))
	}
	// Rule 9: a handshake that proved its address claims the CID it could
	// not take while unverified.
	for _, a := range mo.all {
		if c := mo.cidOf[a]; c != "" && mo.byCID[c] != a && a.state != Unverified && a.state != Ended {
			mo.claim(a)
		}
	}
	for _, e := range h.ended() { // rule 9: an association's end frees its CID
		if c := mo.cidOf[e.a]; c != "" && mo.byCID[c] == e.a {
			delete(mo.byCID, c)
		}
		delete(mo.cidOf, e.a)
		delete(mo.detached, e.a)
	}
	mo.checkBookkeeping()
}

// claim is rule 9's claim of a's CID: the newer association takes it,
// but an unverified one never from a verified one.
func (mo *model) claim(a *Assoc[int]) {
	c := mo.cidOf[a]
	old := mo.byCID[c]
	if old == a {
		return
	}
	if old != nil {
		if a.state == Unverified && old.state != Unverified {
			return
		}
		delete(mo.cidOf, old)
	}
	mo.byCID[c] = a
}

// movedEvent: the shell reports a's stack sending to `to` (rule 9).
func (mo *model) movedEvent(a *Assoc[int], to netip.AddrPort) {
	h := mo.h
	before, from, hadCID := a.state, a.Peer(), mo.cidOf[a] != ""
	var holder *Assoc[int]
	if p := h.m.peers[to]; p != nil {
		holder = p.live
	}
	ok := h.m.Moved(a, to)
	mo.log = append(mo.log, fmt.Sprintf("moved %d (%v) from %v to %v -> %v, ends %v", a.Handle, before, from, to, ok, h.ended()))
	if len(h.ended()) != 0 {
		mo.fail("a move ended %v", h.ended())
	}
	if !hadCID || before != Established && before != Closing || from == to {
		if ok || a.Peer() != from {
			mo.fail("%d (%v, CID %v) moved from %v to %v", a.Handle, before, hadCID, from, a.Peer())
		}
		return
	}
	if a.Peer() != to || ok != (holder == nil) {
		mo.fail("%d moved to %v: at %v, took the address %v; %v held it", a.Handle, to, a.Peer(), ok, holder)
	}
	mo.detached[a] = !ok
}

func (mo *model) clientEvent(peer netip.AddrPort, kind, arg byte) {
	h := mo.h
	d := mo.clientDatagram(peer, kind, arg)
	live, hs := mo.snapshot(peer)
	accepting := h.m.accepting
	gBefore := h.m.Gauges()
	states := map[*Assoc[int]]State{}
	for _, a := range mo.all {
		states[a] = a.state
	}
	r := h.client(peer, d)
	mo.log = append(mo.log, fmt.Sprintf("client %v %x -> %d targets, open %v, drop %v, ends %v", peer, head(d), r.N, r.Open != nil, r.Drop, h.ended()))
	if r.Open != nil {
		mo.all = append(mo.all, r.Open)
	}
	rec := record.Inspect(d)

	// No client datagram ends or quiets a proved association: it can
	// evict an unverified one (rule 1, 2) or reclaim a closing one (rule 6).
	// The exception is rule 10: a fatal alert the datagram delivered to a
	// handshake (checked below).
	gaveUp := mo.cfg.EndOnClientAlert && rec.FatalAlert(d)
	for _, e := range h.ended() {
		switch {
		case e.quiet:
		case e.why == EndEvicted && states[e.a] == Unverified, e.why == EndReclaimed && states[e.a] == Closing:
			continue
		case e.why == EndClientAlert && gaveUp && r.Ended && r.N == 1 && r.To[0] == e.a &&
			(states[e.a] == Handshaking || states[e.a] == Unverified && mo.answered[e.a]):
			continue
		}
		mo.fail("a client datagram ended %v (%v) as %v, quiet %v", e.a.Handle, states[e.a], e.why, e.quiet)
	}
	if r.Open != nil && (!rec.OpensAssociation() || r.Open.Peer() != peer || r.Open.State() != Unverified) {
		mo.fail("%x opened an association (%v, %v)", d, r.Open.Peer(), r.Open.State())
	}
	if r.Ended && !gaveUp {
		mo.fail("route %+v ends its association for %x", r, head(d))
	}
	if r.N == 0 && r.Drop == DropNone || r.N > 0 && r.Drop != DropNone {
		mo.fail("route %+v: delivered and dropped", r)
	}
	known := map[*Assoc[int]]snap{}
	if live != nil {
		known[live.a] = *live
	}
	for _, s := range hs {
		known[s.a] = s
	}
	byCID := mo.cfg.CIDLength > 0 && len(d) > 0 && d[0] == 25
	var holder *Assoc[int]
	if byCID {
		holder = mo.byCID[string(d[11:11+mo.cfg.CIDLength])]
	}
	for i := 0; i < r.N; i++ {
		if _, ok := known[r.To[i]]; !ok && r.To[i] != r.Open && !(byCID && r.To[i] == holder) {
			mo.fail("delivered to %d, not an association of %v", r.To[i].Handle, peer)
		}
		for j := range i {
			if r.To[j] == r.To[i] {
				mo.fail("delivered twice to %d", r.To[i].Handle)
			}
		}
	}
	newest := func(ok func(snap) bool) *Assoc[int] {
		for i := len(hs) - 1; i >= 0; i-- {
			if ok(hs[i]) {
				return hs[i].a
			}
		}
		return nil
	}

	hsOK, liveOK := record.Types(20, 21, 22), record.Types(20, 22)
	if mo.cfg.DTLS13 {
		hsOK, liveOK = hsOK|record.Types(26), liveOK|record.Types(26)
	}
	epoch0 := record.Epoch0Types(d, mo.cfg.CIDLength)
	switch {
	case byCID: // rule 9
		switch {
		case holder == nil:
			mo.wantDrop(r, DropUnknownCID)
		case states[holder] == Unverified && r.Drop == DropRefused:
			if !mo.full(gBefore) {
				mo.fail("a CID record refused below the caps: %+v", gBefore)
			}
		default:
			mo.wantOnly(r, holder)
			if holder.state == Unverified {
				mo.fail("the CID record left %d unverified", holder.Handle)
			}
		}
	case epoch0&^hsOK != 0: // rule 5, in every state
		mo.wantDrop(r, DropInvalid)
	case live == nil && len(hs) == 0 && !rec.OpensAssociation():
		mo.wantDrop(r, DropNoAssociation)
	case rec.OpensAssociation():
		rec := record.Inspect(d)
		ch, hasRandom := rec.ClientHello(d)
		var match *Assoc[int]
		for _, s := range known {
			if hasRandom && s.hasRandom && s.random == ch.Random {
				match = s.a
			}
		}
		switch {
		case match != nil: // rule 2
			if r.Drop == DropRefused && known[match].state == Unverified {
				if !mo.full(gBefore) {
					mo.fail("a cookie echo refused below the caps: %+v", gBefore)
				}
				break
			}
			mo.wantOnly(r, match)
			if known[match].state == Unverified && match.state == Handshaking && (len(ch.Cookie) == 0 || !bytes.Equal(ch.Cookie, cookieOf(match))) {
				mo.fail("%d verified by a ClientHello without its cookie %x", match.Handle, ch.Cookie)
			}
		case hasRandom && newest(func(s snap) bool { return !s.hasRandom }) != nil:
			mo.wantOnly(r, newest(func(s snap) bool { return !s.hasRandom }))
		case !hasRandom && len(hs) > 0:
			mo.wantOnly(r, hs[len(hs)-1].a)
		case !hasRandom && live != nil:
			// A later fragment opens nothing beside a live association: a
			// new handshake's first fragment, with its random, does.
			mo.wantOnly(r, live.a)
		case live != nil && !mo.cfg.Rehandshake:
			mo.wantOnly(r, live.a)
		case !accepting:
			mo.wantDrop(r, DropNotAccepting)
		case r.Drop == DropRefused:
			if len(hs) != MaxPerPeer || newest(func(s snap) bool { return s.state == Unverified }) != nil {
				mo.fail("a new ClientHello refused with room: %d handshakes", len(hs))
			}
		default:
			if r.Open == nil || r.N != 1 || r.To[0] != r.Open {
				mo.fail("a new ClientHello did not open an association: %+v", r)
			}
			if live != nil != r.Open.Rehandshake() {
				mo.fail("re-handshake mark %v with a live association %v", r.Open.Rehandshake(), live != nil)
			}
		}
	case rec.Class == record.ClassNotDTLS:
		if live != nil {
			mo.wantOnly(r, live.a)
		} else if a := newest(func(s snap) bool { return s.state == Handshaking }); a != nil {
			mo.wantOnly(r, a)
		} else {
			mo.wantDrop(r, DropUnproved)
		}
	case rec.ClearText(): // rule 4
		verified := newest(func(s snap) bool { return s.state == Handshaking })
		answered := newest(func(s snap) bool { return s.state == Unverified && s.answered })
		switch {
		case verified != nil:
			mo.wantOnly(r, verified)
			mo.checkGaveUp(r, gaveUp)
		case answered != nil:
			if r.Drop != DropRefused {
				mo.wantOnly(r, answered)
				mo.checkGaveUp(r, gaveUp)
			}
		case live != nil:
			mo.checkLive(r, live, d)
		default:
			mo.wantDrop(r, DropUnproved)
		}
	default: // protected: rule 4
		var want []*Assoc[int]
		// Verifying a handshake at the cap may reclaim the peer's own
		// closing association (checked above: only a closing one).
		liveRefuses := live != nil && epoch0&^liveOK != 0 // rule 5
		if live != nil && live.a.state != Ended && !liveRefuses {
			want = append(want, live.a)
		}
		for _, s := range hs {
			if s.answered && s.a.state == Handshaking {
				want = append(want, s.a)
			}
		}
		if len(want) == 0 && liveRefuses {
			mo.wantDrop(r, DropInvalid)
			break
		}
		if len(want) == 0 {
			mo.wantDrop(r, DropUnproved)
			break
		}
		mo.wantOnly(r, want...)
		if live != nil && live.a.state != Ended && !liveRefuses {
			mo.checkClosingRule(live, d)
		}
	}
}

// checkGaveUp checks rule 10 for a clear-text datagram delivered to a
// handshake: it ends the handshake exactly when it starts with a fatal
// alert (and the config says so).
func (mo *model) checkGaveUp(r Route[int], gaveUp bool) {
	mo.t.Helper()
	if r.N != 1 {
		return // reported by wantOnly
	}
	if ended := r.To[0].state == Ended; ended != gaveUp || r.Ended != gaveUp {
		mo.fail("a clear-text datagram to handshake %d: ended %v, route says %v; want %v", r.To[0].Handle, ended, r.Ended, gaveUp)
	}
}

// checkLive checks a datagram for the established association alone
// against rules 5 and 6.
func (mo *model) checkLive(r Route[int], live *snap, d []byte) {
	liveOK := record.Types(20, 22)
	if mo.cfg.DTLS13 {
		liveOK |= record.Types(26)
	}
	if record.Epoch0Types(d, mo.cfg.CIDLength)&^liveOK != 0 {
		mo.wantDrop(r, DropInvalid)
		return
	}
	mo.wantOnly(r, live.a)
	mo.checkClosingRule(live, d)
}

func (mo *model) checkClosingRule(live *snap, d []byte) {
	a := live.a
	if a.state == Ended {
		return
	}
	alert := mo.cfg.CloseLinger > 0 && len(d) > 0 && d[0] == 21 && record.CarriesClosingAlert(d)
	switch {
	case alert && live.state == Established && a.state != Closing:
		mo.fail("a client alert left %d %v", a.Handle, a.state)
	case !alert && a.state == Closing:
		mo.fail("traffic left %d closing", a.Handle)
	}
}

// full reports whether the caps leave no room to verify another
// association (a closing one would be reclaimed for it).
func (mo *model) full(g Gauges) bool {
	return mo.cfg.MaxHandshakes > 0 && g.Handshaking >= mo.cfg.MaxHandshakes ||
		mo.cfg.MaxAssociations > 0 && g.Handshaking+g.Established+g.Closing >= mo.cfg.MaxAssociations && g.Closing == 0
}

func (mo *model) wantOnly(r Route[int], as ...*Assoc[int]) {
	mo.t.Helper()
	if r.N != len(as) {
		mo.fail("route to %d associations (%v), want %d", r.N, r.Drop, len(as))
	}
	for i, a := range as {
		if r.To[i] != a {
			mo.fail("target %d is %v, want %d", i, r.To[i], a.Handle)
		}
	}
}

func (mo *model) wantDrop(r Route[int], why Drop) {
	mo.t.Helper()
	if r.N != 0 || r.Drop != why {
		mo.fail("route %d targets, drop %v; want dropped as %v", r.N, r.Drop, why)
	}
}

func (mo *model) serverEvent(a *Assoc[int], kind byte) {
	h := mo.h
	d, answers := serverDatagram(a, kind)
	if answers {
		mo.answered[a] = true
	}
	before := a.state
	live, hs := mo.snapshot(a.Peer())
	// Rule 8: a cookie request for a handshake the client moved on from.
	withheld := false
	if !answers && before == Unverified {
		after := false // hs is in opening order
		for _, s := range hs {
			if s.a == a {
				after = true
			} else {
				withheld = withheld || after || s.state == Handshaking
			}
		}
	}
	v := h.m.Server(h.now, a, d)
	mo.log = append(mo.log, fmt.Sprintf("server on %d (%v) %x -> %+v, ends %v", a.Handle, before, head(d), v, h.ended()))
	if rec := record.Inspect(d); mo.cfg.CIDLength > 0 && (before == Unverified || before == Handshaking) {
		if cid, ok := rec.ServerConnectionID(d); ok && len(cid) == mo.cfg.CIDLength && mo.cidOf[a] != string(cid) {
			if c := mo.cidOf[a]; c != "" && mo.byCID[c] == a {
				delete(mo.byCID, c)
			}
			mo.cidOf[a] = string(cid)
			mo.claim(a)
		}
	}
	if v.Forward == withheld {
		mo.fail("server datagram forwarded %v; withheld by rule 8: %v", v.Forward, withheld)
	}
	completed := before == Handshaking && mo.cfg.InferCompletion && record.CarriesApplicationTraffic(d)
	for _, e := range h.ended() {
		switch {
		case e.a == a && e.why == EndServerAlert:
			wantQuiet := (before == Established || before == Closing || completed) && !mo.hasProvedOther(a) && !mo.detached[a]
			if e.quiet != wantQuiet {
				mo.fail("server alert ended %d (was %v), quiet %v, want %v", a.Handle, before, e.quiet, wantQuiet)
			}
		case completed && live != nil && e.a == live.a && e.why == EndRetired && !e.quiet:
		default:
			mo.fail("server datagram on %d ended %v as %v (quiet %v)", a.Handle, e.a.Handle, e.why, e.quiet)
		}
	}
	if v.Ended != (mo.cfg.EndOnServerAlert && record.CarriesClosingAlert(d)) {
		mo.fail("ended %v for %x", v.Ended, head(d))
	}
	if before == Unverified && a.state != Unverified && a.state != Ended {
		mo.fail("a server datagram verified %d", a.Handle)
	}
	if before == Closing && a.state != Closing && a.state != Ended {
		mo.fail("a server datagram undid the client's alert on %d: %v", a.Handle, a.state)
	}
}

// hasProvedOther: the peer of a (already ended) still has a proved association.
func (mo *model) hasProvedOther(a *Assoc[int]) bool {
	live, hs := mo.snapshot(a.Peer())
	if live != nil && live.a != a {
		return true
	}
	for _, s := range hs {
		if s.a != a && s.state == Handshaking {
			return true
		}
	}
	return false
}

func (mo *model) completedEvent(a *Assoc[int]) {
	h := mo.h
	before := a.state
	live, _ := mo.snapshot(a.Peer())
	full := mo.full(h.m.Gauges())
	ok := h.m.Completed(h.now, a)
	mo.log = append(mo.log, fmt.Sprintf("completed %d (%v) -> %v, ends %v", a.Handle, before, ok, h.ended()))
	if before == Unverified && full {
		if ok || len(h.ended()) != 1 || h.ended()[0].a != a || h.ended()[0].why != EndRefused || h.ended()[0].quiet {
			mo.fail("completed unverified %d at the cap: %v, ends %v", a.Handle, ok, h.ended())
		}
		return
	}
	if !ok || a.state != Established && a.state != Closing {
		mo.fail("completed %d: %v, state %v", a.Handle, ok, a.state)
	}
	for _, e := range h.ended() {
		if e.why == EndReclaimed && before == Unverified && !e.quiet {
			continue
		}
		if live == nil || e.a != live.a || live.a == a || e.why != EndRetired || e.quiet || !e.a.Retired() {
			mo.fail("completing %d ended %d as %v (quiet %v)", a.Handle, e.a.Handle, e.why, e.quiet)
		}
	}
	if before != Established && before != Closing && live != nil && live.a != a && live.a.state != Ended {
		mo.fail("completing %d beside %d retired nothing", a.Handle, live.a.Handle)
	}
}

func (mo *model) closedEvent(a *Assoc[int]) {
	h := mo.h
	before := a.state
	// A detached association (rule 9) owns no address to quiet.
	wantQuiet := (before == Established || before == Closing) && !a.retired && !mo.detached[a]
	if wantQuiet {
		live, hs := mo.snapshot(a.Peer())
		if live != nil && live.a != a {
			wantQuiet = false
		}
		for _, s := range hs {
			if s.state == Handshaking {
				wantQuiet = false
			}
		}
	}
	h.m.Closed(a)
	mo.log = append(mo.log, fmt.Sprintf("closed %d (%v), ends %v", a.Handle, before, h.ended()))
	if len(h.ended()) != 1 || h.ended()[0].a != a || h.ended()[0].why != EndClosed || h.ended()[0].quiet != wantQuiet {
		mo.fail("closing %d (%v): ends %v, want it alone, quiet %v", a.Handle, before, h.ended(), wantQuiet)
	}
}

func (mo *model) expireEvent(now int64) {
	h := mo.h
	h.now = now
	h.m.Expire(now)
	mo.log = append(mo.log, fmt.Sprintf("expire at %v, ends %v", time.Duration(now), h.ended()))
	for _, e := range h.ended() {
		if e.quiet {
			mo.fail("a timeout quieted %d", e.a.Handle)
		}
		switch e.why {
		case EndUnverifiedTimeout, EndHandshakeTimeout, EndIdle, EndLinger:
		default:
			mo.fail("Expire ended %d as %v", e.a.Handle, e.why)
		}
	}
	// Nothing is left past its deadline.
	for _, a := range mo.all {
		if at, _, ok := h.m.deadline(a); ok && a.state != Ended && at <= now {
			mo.fail("%d (%v) is past its deadline %v at %v", a.Handle, a.state, time.Duration(at), time.Duration(now))
		}
	}
}

// checkBookkeeping recounts what the Machine tracks.
func (mo *model) checkBookkeeping() {
	m := mo.h.m
	var g Gauges
	for _, a := range mo.all {
		switch a.state {
		case Unverified:
			g.Unverified++
		case Handshaking:
			g.Handshaking++
		case Established:
			g.Established++
		case Closing:
			g.Closing++
		}
		if a.state != Ended {
			if p := m.peers[a.addr]; (p == nil || p != a.p) && !mo.detached[a] {
				mo.fail("%d is not reachable from its peer", a.Handle)
			}
			if a.ConnectionID() != mo.cidOf[a] {
				mo.fail("%d has CID %x, the model %x", a.Handle, a.ConnectionID(), mo.cidOf[a])
			}
			_, _, timed := m.deadline(a)
			if timed != (a.heapIdx >= 0) && !(a.state == Established && a.heapIdx >= 0) {
				mo.fail("%d (%v) timed %v but heap index %d", a.Handle, a.state, timed, a.heapIdx)
			}
		} else if a.heapIdx >= 0 || a.prev != nil || a.next != nil {
			mo.fail("ended %d still linked", a.Handle)
		}
	}
	got := m.Gauges()
	g.Peers = got.Peers
	if got != g {
		mo.fail("gauges %+v, recount %+v", got, g)
	}
	if g.Unverified > mo.cfg.MaxUnverified ||
		mo.cfg.MaxHandshakes > 0 && g.Handshaking > mo.cfg.MaxHandshakes ||
		mo.cfg.MaxAssociations > 0 && g.Handshaking+g.Established+g.Closing > mo.cfg.MaxAssociations {
		mo.fail("caps exceeded: %+v", g)
	}
	for ap, p := range m.peers {
		if p.live == nil && p.n == 0 {
			mo.fail("empty peer %v kept", ap)
		}
		if p.live != nil && p.live.state != Established && p.live.state != Closing {
			mo.fail("live association of %v is %v", ap, p.live.state)
		}
		for i := 0; i < p.n; i++ {
			if s := p.hs[i].state; s != Unverified && s != Handshaking {
				mo.fail("handshake of %v is %v", ap, s)
			}
			if i > 0 && p.hs[i-1].opened > p.hs[i].opened {
				mo.fail("handshakes of %v out of order", ap)
			}
		}
	}
	checkList := func(head *Assoc[int], want State, n int) {
		var prev *Assoc[int]
		count := 0
		for a := head; a != nil; a = a.next {
			if a.state != want || a.prev != prev {
				mo.fail("%v list holds %d (%v)", want, a.Handle, a.state)
			}
			prev = a
			count++
		}
		if count != n {
			mo.fail("%v list has %d, gauge %d", want, count, n)
		}
	}
	checkList(m.uhead, Unverified, g.Unverified)
	checkList(m.chead, Closing, g.Closing)
	for i, a := range m.heap {
		if a.heapIdx != i || i > 0 && m.heap[(i-1)/2].due > a.due {
			mo.fail("heap broken at %d", i)
		}
	}
}

func head(d []byte) []byte { return d[:min(len(d), 6)] }

func modelConfig(r *rand.Rand) Config {
	cfg := Config{
		MaxUnverified:     1 + r.IntN(6),
		UnverifiedTimeout: 5 * time.Second,
		MaxHandshakes:     r.IntN(4),
		MaxAssociations:   r.IntN(5),
		HandshakeTimeout:  30 * time.Second,
		Rehandshake:       r.IntN(4) != 0,
		InferCompletion:   r.IntN(2) == 0,
		EndOnServerAlert:  r.IntN(2) == 0,
		EndOnClientAlert:  r.IntN(2) == 0,
		DTLS13:            r.IntN(2) == 0,
	}
	if r.IntN(2) == 0 {
		cfg.CIDLength = 8
	}
	if r.IntN(2) == 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if r.IntN(2) == 0 {
		cfg.CloseLinger = 2 * time.Second
	}
	return cfg
}

func TestModel(t *testing.T) {
	for seed := range uint64(1000) {
		r := rand.New(rand.NewPCG(seed, 12))
		cfg := modelConfig(r)
		mo := newModel(t, cfg, 1+r.IntN(5))
		for range 400 {
			mo.step(byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()))
			if t.Failed() {
				t.Fatalf("seed %d, config %+v", seed, cfg)
			}
		}
		if r.IntN(3) == 0 {
			mo.h.m.StopAccepting()
			for range 50 {
				mo.step(byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()))
			}
		}
	}
}

// FuzzMachine is the model test with the configuration and the events
// taken from the fuzzer.
func FuzzMachine(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 0, 3, 0, 0, 0, 0, 2, 5, 0, 1})
	f.Add([]byte{7, 3, 2, 1, 0, 0, 1, 0, 0, 8, 3, 0, 0, 1, 1, 5, 0, 1, 0, 1, 9, 4, 0, 4, 6, 0, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 1 || len(b) > 3*600 {
			return
		}
		r := rand.New(rand.NewPCG(uint64(b[0]), 0))
		mo := newModel(t, modelConfig(r), 1+int(b[0]%5))
		for i := 1; i+2 < len(b); i += 3 {
			mo.step(b[i], b[i+1], b[i+2])
		}
	})
}
