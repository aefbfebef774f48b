package relay

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/straydtls/straydtls/strayfilter"
)

// fakeUpstream is an upstream socket in memory: what the relay writes is
// counted, and the test makes the server speak with serve.
type fakeUpstream struct {
	in     chan served // unbuffered: serve hands the pump one datagram
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	written int
	// spoke is set once the server sent anything; early is set if the relay
	// wrote a protected record before that, which a server would take as
	// the first datagram of a new connection.
	spoke, early bool
	// handling is closed when the pump has finished with the datagram it
	// read last: it is back in Read, or the socket closed.
	handling chan struct{}
}

type served struct {
	d    []byte
	done chan struct{}
}

func newFakeUpstream() *fakeUpstream {
	return &fakeUpstream{in: make(chan served), closed: make(chan struct{})}
}

func (f *fakeUpstream) finish() {
	f.mu.Lock()
	if f.handling != nil {
		close(f.handling)
		f.handling = nil
	}
	f.mu.Unlock()
}

func (f *fakeUpstream) Read(b []byte) (int, error) {
	f.finish()
	select {
	case s := <-f.in:
		f.mu.Lock()
		f.handling = s.done
		f.mu.Unlock()
		return copy(b, s.d), nil
	case <-f.closed:
		return 0, net.ErrClosed
	}
}

// serve has the server send d and returns once the relay's pump has handled
// it: it is back in Read, or it ended the association and closed the socket.
func (f *fakeUpstream) serve(t *testing.T, d []byte) {
	t.Helper()
	f.mu.Lock()
	f.spoke = true
	f.mu.Unlock()
	done := make(chan struct{})
	select {
	case f.in <- served{d, done}:
	case <-f.closed:
		t.Fatal("the association ended before the server spoke")
	case <-time.After(5 * time.Second):
		t.Fatal("the relay does not read its upstream socket")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not handle the server's datagram")
	}
}

func (f *fakeUpstream) sentEarly() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.early
}

func (f *fakeUpstream) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written
}

func (f *fakeUpstream) Write(b []byte) (int, error) {
	select {
	case <-f.closed:
		return 0, net.ErrClosed
	default:
	}
	f.mu.Lock()
	f.written++
	if !f.spoke && strayfilter.Inspect(b).Protected() {
		f.early = true
	}
	f.mu.Unlock()
	return len(b), nil
}

func (f *fakeUpstream) Close() error {
	f.once.Do(func() { close(f.closed) })
	f.finish()
	return nil
}
func (f *fakeUpstream) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (f *fakeUpstream) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
}
func (f *fakeUpstream) SetDeadline(time.Time) error      { return nil }
func (f *fakeUpstream) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeUpstream) SetWriteDeadline(time.Time) error { return nil }

// What the fuzzed server sends: its Finished (the first protected record,
// which makes a pending association the live one), an encrypted closing
// alert (also protected), or a plaintext fatal alert (a handshake refused).
var (
	serverFinished = []byte{0x16, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0xaa, 0xbb}
	serverAlert    = []byte{0x15, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 3, 0, 2, 0xaa, 0xbb}
	serverRefusal  = []byte{0x15, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 40}
)

// writes is how many datagrams the relay has sent on a's upstream socket.
func writes(a *association) int {
	if a == nil {
		return 0
	}
	return a.up.(*fakeUpstream).count()
}

// FuzzRelayPackets feeds the relay's packet handling a fuzzed sequence of
// client datagrams and server records (a Finished, an encrypted alert or a
// plaintext fatal alert, on a client's live or pending association) for four
// clients, with a cap of two associations, and checks after every step: no panic; the cap holds and the
// count matches the routing table; only a datagram that opens an
// association creates one, and only a ClientHello after a completed
// handshake a pending one; a client datagram never ends or replaces an
// association; a quiet client's stray never reaches the server; every
// datagram goes where the routing rules say, exactly once; the server's
// Finished makes a pending association the live one and ends the old; a
// server alert ends its association and quiets the client only if no
// other association of that client carries on.
func FuzzRelayPackets(f *testing.F) {
	hello := []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	seed := func(steps ...[]byte) []byte {
		var b []byte
		for _, s := range steps {
			b = append(b, s[0], byte(len(s)-1))
			b = append(b, s[1:]...)
		}
		return b
	}
	appData := []byte{0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 2, 0, 1, 0}
	// helloRandom is a ClientHello's first fragment with its random filled
	// with b: the same b is a copy of one handshake's ClientHello, another
	// b a new handshake.
	helloRandom := func(b byte) []byte {
		h := []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 46,
			1, 0, 0, 34, 0, 0, 0, 0, 0, 0, 0, 34, 0xfe, 0xfd}
		for range 32 {
			h = append(h, b)
		}
		return h
	}
	f.Add(seed(append([]byte{0}, hello...), []byte{0x80}, append([]byte{1}, hello...)))
	f.Add(seed(append([]byte{2}, hello...), append([]byte{2}, 0x17, 0xfe, 0xfd, 0, 1), []byte{0x82}, []byte{2, 0x17}))
	f.Add(seed(append([]byte{0}, hello...), append([]byte{1}, hello...), append([]byte{2}, hello...), []byte{3}))
	// A re-handshake that completes, one the old association's alert
	// overtakes, ones whose own server refuses or closes it, and a late
	// copy of the old ClientHello, which starts nothing.
	h1, h2 := append([]byte{0}, helloRandom(1)...), append([]byte{0}, helloRandom(2)...)
	f.Add(seed(h1, []byte{0xa0}, h2, append([]byte{0}, appData...), []byte{0xe0}, append([]byte{0}, appData...)))
	f.Add(seed(h1, []byte{0xa0}, h2, []byte{0x80}, h2))
	f.Add(seed(h1, []byte{0xa0}, h2, []byte{0xd0}, append([]byte{0}, appData...)))
	f.Add(seed(h1, []byte{0xa0}, h2, []byte{0xc0}, append([]byte{0}, appData...)))
	f.Add(seed(h1, []byte{0xa0}, h1, append([]byte{0}, appData...)))

	// Clients are real loopback sockets, so what the relay sends them goes
	// nowhere else. The relay's own socket is shared by every execution:
	// opening one per execution made the target spend its time in the
	// kernel rather than in handleClient.
	var clients [4]netip.AddrPort
	for i := range clients {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			f.Fatal(err)
		}
		defer pc.Close()
		clients[i] = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	defer pc.Close()

	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := New(pc, netip.MustParseAddrPort("127.0.0.1:9"), WithMaxAssociations(2))
		if err != nil {
			t.Fatal(err)
		}
		ended := make(chan struct{}, 64)
		r.ended = func(net.Addr) {
			select {
			case ended <- struct{}{}:
			default:
			}
		}
		waitEnded := func(what string) {
			select {
			case <-ended:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: the association did not end", what)
			}
		}
		defer endAll(r)
		r.dial = func() (net.Conn, error) { return newFakeUpstream(), nil }
		routes := func(client netip.AddrPort) (live, pending *association) {
			r.mu.Lock()
			defer r.mu.Unlock()
			n := 0
			for c, p := range r.peers {
				if p.live == nil {
					t.Fatalf("%v has a pending association and no live one", c)
				}
				n++
				if p.pending != nil {
					n++
				}
			}
			if n != r.count || n > 2 {
				t.Fatalf("%d associations routed, %d counted, cap 2", n, r.count)
			}
			if p := r.peers[client]; p != nil {
				return p.live, p.pending
			}
			return nil, nil
		}

		for len(in) >= 2 {
			op, n := in[0], int(in[1])
			in = in[2:]
			n = min(n, len(in))
			data := in[:n]
			in = in[n:]
			client := clients[op&3]
			live, pending := routes(client)
			quiet := r.table.Quiet(client)

			if op&0x80 != 0 {
				// The server speaks on the client's live or pending association.
				a, other := live, pending
				if op&0x40 != 0 {
					a, other = pending, live
				}
				if a == nil {
					continue
				}
				if op&0x20 != 0 {
					a.up.(*fakeUpstream).serve(t, serverFinished)
					if a == pending {
						waitEnded("promotion")
					}
					live2, pending2 := routes(client)
					if a == pending {
						if live2 != a || pending2 != nil || !live.replaced.Load() {
							t.Fatal("the server's Finished did not make the pending association the live one")
						}
					} else if live2 != live || pending2 != pending || !a.established.Load() {
						t.Fatal("the server's Finished on the live association changed the routing")
					}
					continue
				}
				alert := serverAlert
				if op&0x10 != 0 {
					alert = serverRefusal
				}
				a.up.(*fakeUpstream).serve(t, alert)
				waitEnded("server alert")
				if a == pending && op&0x10 == 0 {
					// An encrypted alert is protected: the new handshake got
					// somewhere, so it replaced the old association before
					// it ended, and nothing of the client is left.
					waitEnded("the replaced association")
					other = nil
				}
				live2, pending2 := routes(client)
				switch {
				case live2 == a || pending2 == a:
					t.Fatalf("%v's association outlived the server's alert", client)
				case other != nil && (live2 != other || pending2 != nil):
					t.Fatalf("%v's other association did not carry on alone", client)
				case other != nil && r.table.Quiet(client) != quiet:
					t.Fatalf("%v's quiet period changed although an association carries on", client)
				case other == nil && !r.table.Quiet(client):
					t.Fatalf("%v not quiet after the server's alert on its last association", client)
				}
				continue
			}

			wLive, wPending := writes(live), writes(pending)
			rec := strayfilter.Inspect(data)
			opens := rec.OpensAssociation()
			rnd, hasRandom := strayfilter.ClientRandom(data)
			// A ClientHello with a new random after a completed handshake
			// starts a new association (or is refused at the cap).
			startsNew := live != nil && pending == nil && live.established.Load() && hasRandom &&
				(!live.hasRandom || rnd != live.random)
			r.handleClient(data, client)
			live2, pending2 := routes(client)
			switch {
			case live == nil && live2 != nil && !opens:
				t.Fatalf("a datagram that opens nothing (%x) created an association", data)
			case live == nil && live2 != nil && writes(live2) != 1:
				t.Fatalf("the opening datagram was forwarded %d times", writes(live2))
			case live == nil && quiet && !opens && live2 != nil:
				t.Fatalf("a quiet client's stray (%x) reached the server", data)
			case live != nil && live2 != live:
				t.Fatalf("a client datagram (%x) replaced or ended a live association", data)
			case pending != nil && pending2 != pending:
				t.Fatalf("a client datagram (%x) replaced or ended a pending association", data)
			case pending2 != pending && !startsNew:
				t.Fatalf("a datagram (%x) started a re-handshake that is no new ClientHello after a completed handshake", data)
			}
			// Where it went.
			var toLive, toPending int
			switch {
			case live == nil:
			case pending == nil && pending2 != nil:
				toPending = 1 // the ClientHello that opened it, and only there
			case startsNew:
				// Refused at the cap: dropped.
			case pending == nil && rec.Protected() && !live.answered.Load():
				// Nothing protected before the server answered: dropped.
			case pending == nil:
				toLive = 1
			case rec.ClearText():
				toPending = 1 // the new handshake's clear text
			default:
				toLive = 1
				if pending.answered.Load() {
					toPending = 1
				}
			}
			for _, a := range []*association{live2, pending2} {
				if a != nil && a.up.(*fakeUpstream).sentEarly() {
					t.Fatalf("%x: a server was sent a protected record before it answered", data)
				}
			}
			if live != nil && (writes(live)-wLive != toLive || writes(pending2)-wPending != toPending) {
				t.Fatalf("%x forwarded %d to the live and %d to the pending association; want %d and %d",
					data, writes(live)-wLive, writes(pending2)-wPending, toLive, toPending)
			}
		}
	})
}

// endAll is Close without closing the shared listening socket: every
// association ends and its pump returns before the next execution.
func endAll(r *Relay) {
	r.mu.Lock()
	r.closed = true
	for _, p := range r.peers {
		p.live.up.Close()
		if p.pending != nil {
			p.pending.up.Close()
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
}
