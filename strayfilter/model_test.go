package strayfilter_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

// The model: what must pass and what must drop, written from the rules and
// nothing else. A peer is quiet from a local close until its quiet period
// ends, it is forgotten, it opens a new association, or it is one of more
// than cap peers closed since and was closed before them all. A close may
// name the closed association's client random: a ClientHello carrying it
// is a late copy, dropped, and the quiet period goes on. A later fragment
// of a ClientHello opens nothing while its peer is quiet.
type model struct {
	quiet time.Duration
	cap   int
	now   time.Duration
	order []netip.AddrPort // oldest first
	until map[netip.AddrPort]time.Duration
	hello map[netip.AddrPort][32]byte
}

func newModel(quiet time.Duration, cap int) *model {
	return &model{quiet: quiet, cap: cap, until: map[netip.AddrPort]time.Duration{}, hello: map[netip.AddrPort][32]byte{}}
}

func (m *model) remove(p netip.AddrPort) {
	if _, ok := m.until[p]; !ok {
		return
	}
	delete(m.until, p)
	delete(m.hello, p)
	for i, q := range m.order {
		if q == p {
			m.order = append(m.order[:i], m.order[i+1:]...)
			return
		}
	}
}

func (m *model) close(p netip.AddrPort) {
	m.remove(p)
	m.order = append(m.order, p)
	m.until[p] = m.now + m.quiet
	// Expired entries never count against the cap; evicting them or
	// sweeping them is the same to a reader.
	for len(m.order) > 0 && m.until[m.order[0]] <= m.now {
		m.remove(m.order[0])
	}
	if len(m.order) > m.cap {
		m.remove(m.order[0])
	}
}

func (m *model) isQuiet(p netip.AddrPort) bool {
	u, ok := m.until[p]
	return ok && m.now < u
}

// receive says whether a datagram passes.
func (m *model) receive(p netip.AddrPort, k kind) bool {
	if !m.isQuiet(p) {
		return true
	}
	if k.opens {
		if r, ok := m.hello[p]; !k.first || ok && r == k.random {
			return false
		}
		m.remove(p)
		return true
	}
	return !k.dtls // non-DTLS passes by default
}

// kind is a datagram the property test sends, with what the rules say of it.
type kind struct {
	name  string
	data  []byte
	opens bool // an epoch-0 ClientHello (fragment)
	dtls  bool // first byte in 20..63
	// first: a ClientHello's first fragment, holding random.
	first  bool
	random [32]byte
}

func kinds(t *testing.T) []kind {
	ks := []kind{
		{name: "ClientHello", data: loadRecord(t, "pion-v2-00-client-ClientHello-frag0.hex"), opens: true, dtls: true},
		{name: "second ClientHello", data: loadRecord(t, "pion-v2-02-client-ClientHello-frag0.hex"), opens: true, dtls: true},
		{name: "other ClientHello", data: loadRecord(t, "pion-v3-cid-00-client-ClientHello-frag0.hex"), opens: true, dtls: true},
		{name: "ClientHello fragment", data: loadRecord(t, "pion-v2-mtu60-01-client-ClientHello-frag60.hex"), opens: true, dtls: true},
		{name: "ClientKeyExchange", data: loadRecord(t, "pion-v2-04-client-ClientKeyExchange-frag0.hex"), dtls: true},
		{name: "application data", data: loadRecord(t, "pion-v2-06-client-application-data-epoch1.hex"), dtls: true},
		{name: "alert", data: loadRecord(t, "pion-v2-08-client-alert-epoch1.hex"), dtls: true},
		{name: "Finished", data: loadRecord(t, "pion-v2-mtu60-11-client-handshake-epoch1.hex"), dtls: true},
		{name: "CCS", data: loadRecord(t, "pion-v2-mtu60-10-client-change-cipher-spec-epoch0.hex"), dtls: true},
		{name: "CID", data: loadRecord(t, "pion-v3-cid-06-client-connection-id-epoch1.hex"), dtls: true},
		{name: "DTLS 1.3", data: loadRecord(t, "synthetic-dtls13-unified-long.hex"), dtls: true},
		{name: "STUN", data: loadRecord(t, "synthetic-stun-binding-request.hex")},
		{name: "truncated", data: []byte{0x17, 0xfe, 0xfd, 0, 1}, dtls: true},
		{name: "empty", data: nil, dtls: true},
	}
	for i, k := range ks {
		// The random of a first fragment, by hand (record is under test).
		if k.opens && k.data[19]|k.data[20]|k.data[21] == 0 {
			ks[i].first, ks[i].random = true, [32]byte(k.data[27:59])
		}
	}
	return ks
}

// harness drives a real Conn and the model with the same events.
type harness struct {
	t      *testing.T
	m      *model
	c      *strayfilter.Conn
	fc     *fakeConn
	clock  *testClock
	kinds  []kind
	peers  []netip.AddrPort
	buf    []byte
	alert  []byte
	events []string
}

const sentinelPort = 1

func newHarness(t *testing.T, quiet time.Duration, cap int, peers int) *harness {
	fc := newFakeConn()
	clock := newTestClock()
	c, err := strayfilter.New(fc, strayfilter.WithQuietPeriod(quiet), strayfilter.WithMaxQuietPeers(cap), strayfilter.WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, m: newModel(quiet, cap), c: c, fc: fc, clock: clock, kinds: kinds(t),
		buf: make([]byte, 65536), alert: loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")}
	for i := range peers {
		// Closes name a peer in plain or IPv4-mapped form at random (see
		// step): the same peer, however the socket spells it.
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		h.peers = append(h.peers, netip.AddrPortFrom(a, uint16(5000+i)))
	}
	return h
}

func (h *harness) fail(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("%s\nevents:\n%v", fmt.Sprintf(format, args...), h.events)
}

// step applies one event chosen by op and arg.
func (h *harness) step(op, arg, arg2 uint8) {
	h.t.Helper()
	p := h.peers[int(arg)%len(h.peers)]
	switch op % 7 {
	case 0: // the stack closes (explicit)
		h.events = append(h.events, "close "+p.String())
		mapped := netip.AddrPortFrom(netip.AddrFrom16(p.Addr().As16()), p.Port())
		if arg2%2 == 0 {
			mapped = p
		}
		if err := h.c.MarkClosedAddrPort(mapped); err != nil {
			h.fail("MarkClosed(%v): %v", mapped, err)
		}
		h.m.close(p)
	case 6: // the stack closes an association whose ClientHello it names
		k := h.kinds[int(arg2)%3] // one of the first fragments
		h.events = append(h.events, "close "+p.String()+" after "+k.name)
		if err := h.c.MarkClosedWith(p, conntrack.Closure{ClientRandom: k.random, HasRandom: true}); err != nil {
			h.fail("MarkClosedWith(%v): %v", p, err)
		}
		h.m.close(p)
		h.m.hello[p] = k.random
	case 1: // our side sends a closing alert
		h.events = append(h.events, "alert to "+p.String())
		h.c.WriteTo(h.alert, net.UDPAddrFromAddrPort(p))
		h.m.close(p)
	case 2:
		h.events = append(h.events, "forget "+p.String())
		h.c.Table().Forget(p)
		h.m.remove(p)
	case 3:
		d := time.Duration(arg2) * 100 * time.Millisecond
		h.events = append(h.events, "advance "+d.String())
		h.clock.advance(d)
		h.m.now += d
	default: // a datagram arrives
		k := h.kinds[int(arg2)%len(h.kinds)]
		h.events = append(h.events, k.name+" from "+p.String())
		want := h.m.receive(p, k)
		got := h.receive(p, k.data)
		if got != want {
			h.fail("%s from %v: passed = %v, model says %v", k.name, p, got, want)
		}
	}
	if got, want := h.c.Table().Quiet(p), h.m.isQuiet(p); got != want {
		h.fail("after the last event %v quiet = %v, model says %v", p, got, want)
	}
}

// receive queues the datagram and a sentinel from a peer never closed, and
// reports whether the datagram came out before the sentinel.
func (h *harness) receive(p netip.AddrPort, data []byte) bool {
	sentinel := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, 1}), sentinelPort)
	h.fc.push(data, net.UDPAddrFromAddrPort(p))
	h.fc.push([]byte("sentinel"), net.UDPAddrFromAddrPort(sentinel))
	passed := false
	for {
		n, addr, err := h.c.ReadFrom(h.buf)
		if err != nil {
			h.fail("ReadFrom: %v", err)
		}
		if addr.(*net.UDPAddr).AddrPort() == sentinel {
			return passed
		}
		if passed || string(h.buf[:n]) != string(data) {
			h.fail("ReadFrom returned %d bytes from %v that were never sent", n, addr)
		}
		passed = true
	}
}

// TestModel runs random interleavings of closes, alerts, forgets, time and
// datagrams of every class from a few peers against the model, with a cap
// small enough that eviction happens.
func TestModel(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 40
	}
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 1))
		h := newHarness(t, 3*time.Second, 4, 7)
		for range 300 {
			h.step(uint8(rng.UintN(256)), uint8(rng.UintN(256)), uint8(rng.UintN(256)))
		}
		s := h.c.Stats()
		if s.QuietPeers > 4 {
			t.Fatalf("seed %d: %d peers in a table capped at 4", seed, s.QuietPeers)
		}
	}
}

// FuzzConnEvents drives the whole Conn with a fuzzed sequence of events on
// a fake net.PacketConn and checks every outcome against the model.
func FuzzConnEvents(f *testing.F) {
	f.Add([]byte{0, 1, 0, 4, 1, 3, 4, 1, 0, 3, 0, 40, 4, 1, 0})
	f.Add([]byte{1, 2, 0, 5, 2, 4, 2, 2, 0, 5, 2, 0})
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 5, 0, 3, 0, 40, 4, 0, 3})
	f.Fuzz(func(t *testing.T, events []byte) {
		if len(events) > 3*500 {
			return
		}
		h := newHarness(t, 2*time.Second, 3, 5)
		for i := 0; i+2 < len(events); i += 3 {
			h.step(events[i], events[i+1], events[i+2])
		}
	})
}

// TestModelConcurrentReaders is the model under concurrency: four goroutines
// read the Conn while another churns the table (closes, alerts, forgets of
// other peers, so entries come and go and the index is rebuilt) and a third
// checks the table. Peers whose state never changes must get the model's
// answer every time, whatever the interleaving: live peers lose nothing, and
// quiet peers' strays never come out.
func TestModelConcurrentReaders(t *testing.T) {
	const (
		readers  = 4
		perPeer  = 300
		livePeer = 6
		quietN   = 6
		churnN   = 40 // quietN + churnN stays under the cap: nothing stable is evicted
	)
	var dropped atomic.Int64
	fc := newFakeConn()
	clock := newTestClock()
	c, err := strayfilter.New(fc, strayfilter.WithQuietPeriod(time.Hour), strayfilter.WithMaxQuietPeers(64),
		strayfilter.WithClock(clock.now), strayfilter.WithDropHook(func(netip.AddrPort, record.Reason) { dropped.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	peer := func(net byte, i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, net, byte(i)}), uint16(5000+i))
	}
	var live, quiet, churn []netip.AddrPort
	for i := range livePeer {
		live = append(live, peer(1, i))
	}
	for i := range quietN {
		quiet = append(quiet, peer(2, i))
		c.MarkClosedAddrPort(quiet[i])
	}
	for i := range churnN {
		churn = append(churn, peer(3, i))
	}
	ks := kinds(t)

	// Readers tally what came out, by peer group.
	var fromLive, fromQuiet, fromChurn atomic.Int64
	var wg sync.WaitGroup
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 65536)
			for {
				_, addr, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				switch addr.(*net.UDPAddr).AddrPort().Addr().As4()[2] {
				case 1:
					fromLive.Add(1)
				case 2:
					fromQuiet.Add(1)
				default:
					fromChurn.Add(1)
				}
			}
		}()
	}

	stop := make(chan struct{})
	var side sync.WaitGroup
	side.Add(2)
	go func() { // the stack closing and forgetting other peers
		defer side.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		alert := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := churn[rng.IntN(len(churn))]
			switch rng.IntN(3) {
			case 0:
				c.MarkClosedAddrPort(p)
			case 1:
				c.WriteTo(alert, net.UDPAddrFromAddrPort(p))
			default:
				c.Table().Forget(p)
			}
		}
	}()
	var wrong atomic.Int64
	go func() { // a checker asking the table while it changes
		defer side.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := range quietN {
				if !c.Table().Quiet(quiet[i]) || c.Table().Quiet(live[i%livePeer]) {
					wrong.Add(1)
				}
			}
		}
	}()

	// Quiet peers never send a ClientHello here: that would end their
	// quiet period, and their state must not change.
	rng := rand.New(rand.NewPCG(3, 4))
	var sent, wantLive, wantQuiet int64
	for range perPeer {
		for _, group := range [][]netip.AddrPort{live, quiet, churn} {
			for _, p := range group {
				k := ks[rng.IntN(len(ks))]
				if group[0] == quiet[0] && k.opens {
					continue
				}
				fc.push(k.data, net.UDPAddrFromAddrPort(p))
				sent++
				switch {
				case group[0] == live[0]:
					wantLive++
				case group[0] == quiet[0] && !k.dtls:
					wantQuiet++
				}
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for fromLive.Load()+fromQuiet.Load()+fromChurn.Load()+dropped.Load() < sent {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d datagrams accounted for", fromLive.Load()+fromQuiet.Load()+fromChurn.Load()+dropped.Load(), sent)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	side.Wait()
	c.Close()
	wg.Wait()

	if got := fromLive.Load(); got != wantLive {
		t.Errorf("live peers: %d datagrams delivered, %d sent", got, wantLive)
	}
	if got := fromQuiet.Load(); got != wantQuiet {
		t.Errorf("quiet peers: %d datagrams delivered, want only their %d non-DTLS ones", got, wantQuiet)
	}
	if n := wrong.Load(); n != 0 {
		t.Errorf("the table gave %d wrong answers for peers whose state never changed", n)
	}
	// ReadFrom does not count what it passes (Stats.Passed): what the
	// readers got plus what the Conn dropped must be what was sent.
	delivered := fromLive.Load() + fromQuiet.Load() + fromChurn.Load()
	if s := c.Stats(); uint64(delivered)+s.TotalStrays() != uint64(sent) || s.Passed != 0 {
		t.Errorf("counters: %d delivered + %d dropped, %d sent; %d passed counted by single reads", delivered, s.TotalStrays(), sent, s.Passed)
	}
	t.Logf("%d datagrams: %d live, %d quiet, %d churn delivered, %d dropped", sent, fromLive.Load(), fromQuiet.Load(), fromChurn.Load(), dropped.Load())
}
