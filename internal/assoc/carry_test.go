package assoc

import (
	"testing"
	"time"
)

// TestCarryOver saves a machine's associations and restores them into a
// new one, as a relay hands over to its successor: each keeps its state,
// routes as before, and times out when it would have; the counters carry
// over; nothing counts as opened twice.
func TestCarryOver(t *testing.T) {
	cfg := defaultTestConfig()
	cfg.CloseLinger = time.Second
	cfg.IdleTimeout = 10 * time.Second
	old := newHarness(t, cfg)
	live := old.establish(addr(1), 1)
	closing := old.establish(addr(2), 2)
	hs := old.open(addr(3), 3)
	old.verify(hs, 3)
	unverified := old.open(addr(4), 4)
	old.now += int64(4 * time.Second)
	old.client(addr(1), appData)
	old.client(addr(2), encryptedAlert)
	old.now += int64(time.Second) / 2

	saved := old.m.Save(old.now)
	if len(saved) != 3 || saved[2].Assoc != hs {
		t.Fatalf("saved %d associations, the handshake last; got %+v", len(saved), saved)
	}
	_ = unverified // not carried: its cookie hash is this machine's

	next := newHarness(t, cfg)
	next.now = 1 << 40 // another process's clock
	byPeer := map[int]*Assoc[int]{}
	for _, c := range saved {
		a, err := next.m.Restore(next.now, c.Saved, c.Assoc.Handle)
		if err != nil {
			t.Fatal(err)
		}
		byPeer[int(c.Saved.Peer.Port())] = a
	}
	next.m.SetCounters(old.m.Counters())
	if g := next.m.Gauges(); g.Established != 1 || g.Closing != 1 || g.Handshaking != 1 || g.Unverified != 0 {
		t.Fatalf("gauges after restore: %+v", g)
	}
	if next.m.Counters() != old.m.Counters() {
		t.Errorf("counters %+v; want the old machine's %+v", next.m.Counters(), old.m.Counters())
	}
	nl, nc, nh := byPeer[int(addr(1).Port())], byPeer[int(addr(2).Port())], byPeer[int(addr(3).Port())]
	if nl.Handle != live.Handle || nc.Handle != closing.Handle || nh.Handle != hs.Handle {
		t.Fatal("handles not carried")
	}
	wantRoute(t, "live application data", next.client(addr(1), appData), nl)
	if r := next.client(addr(4), appData); r.N != 0 {
		t.Error("the unverified handshake's peer routes somewhere")
	}
	// The closing one lingers for what was left: half a second.
	next.now += int64(time.Second)/2 - 1
	next.m.Expire(next.now)
	next.wantAlive(nc)
	next.now++
	next.m.Expire(next.now)
	next.wantEnded(nc, EndLinger, false)
	// The live one idles out 10 s after its last datagram (at the
	// restore); the handshake 30 s after it opened, 4.5 s before it.
	next.now += int64(9*time.Second) + int64(time.Second)/2
	next.m.Expire(next.now)
	next.wantEnded(nl, EndIdle, false)
	next.now += int64(15*time.Second) + int64(time.Second)/2 - 1
	next.m.Expire(next.now)
	next.wantAlive(nh)
	next.now++
	next.m.Expire(next.now)
	next.wantEnded(nh, EndHandshakeTimeout, false)
}
