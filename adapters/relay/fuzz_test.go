package relay

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/record"
)

// fakeUpstream is an upstream socket in memory: what the relay writes is
// counted, and the test makes the server speak with serve.
type fakeUpstream struct {
	in     chan served // unbuffered: serve hands the pump one datagram
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	written int
	// answered is set once the server sent something other than a
	// HelloVerifyRequest; early is set if the relay wrote a protected
	// record before that, which a server would take as the first datagram
	// of a new connection.
	answered, early bool
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
	if r := record.Inspect(d); !r.AsksForCookie() {
		f.answered = true
	}
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
	if r := record.Inspect(b); !f.answered && r.Protected() {
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

// What the fuzzed server sends.
var (
	serverFinished = []byte{0x16, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0xaa, 0xbb}
	serverAlert    = []byte{0x15, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 3, 0, 2, 0xaa, 0xbb}
	serverRefusal  = []byte{0x15, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 40}
	serverHVR      = []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17,
		3, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 5, 0xfe, 0xff, 2, 0xc0, 0x0c}
	serverHello = []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 16,
		2, 0, 0, 4, 0, 1, 0, 0, 0, 0, 0, 4, 0xfe, 0xfd, 0, 0}
	serverData = []byte{0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0xaa, 0xbb}
)

// associations returns the client's associations, live first, and their
// fake upstream sockets.
func associations(r *Relay, client netip.AddrPort) []*upstreamConn {
	r.sh.Lock()
	defer r.sh.Unlock()
	var out []*upstreamConn
	for u := range r.all {
		if u.client == client && u.a.State() != assoc.Ended {
			out = append(out, u)
		}
	}
	// Stable order: by opening time.
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].opened < out[i].opened {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func fake(u *upstreamConn) *fakeUpstream { return u.conn.(*fakeUpstream) }

// FuzzRelayPackets drives the relay's shell (routing is the association
// machine's, fuzzed on its own in internal/assoc) with a fuzzed sequence
// of client datagrams and server datagrams (a HelloVerifyRequest, a
// ServerHello, a Finished, application data, an encrypted alert, a
// plaintext refusal) on the associations of four clients, with caps of two
// unverified and two proved associations, and checks after every step: no
// panic and no deadlock; an upstream socket is open for exactly the
// associations the machine has; a client datagram is written only to
// sockets of its own client's associations, at most once each; a datagram
// from a client without an association that does not open one reaches no
// server; no server is sent a protected record before it answered; a
// server's closing alert ends its association, and quiets the client when
// it was completed and nothing proved is left.
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
	// with b, echoing cookie.
	helloRandom := func(b byte, cookie ...byte) []byte {
		h := []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(12 + 36 + len(cookie)),
			1, 0, 0, byte(36 + len(cookie)), 0, 0, 0, 0, 0, 0, 0, byte(36 + len(cookie)), 0xfe, 0xfd}
		for range 32 {
			h = append(h, b)
		}
		h = append(h, 0, byte(len(cookie)))
		return append(h, cookie...)
	}
	f.Add(seed(append([]byte{0}, hello...), []byte{0x80}, append([]byte{1}, hello...)))
	f.Add(seed(append([]byte{2}, hello...), append([]byte{2}, 0x17, 0xfe, 0xfd, 0, 1), []byte{0x82}, []byte{2, 0x17}))
	// The cookie exchange, a completed handshake, a re-handshake beside it
	// that completes, and alerts either way.
	h1, e1 := append([]byte{0}, helloRandom(1)...), append([]byte{0}, helloRandom(1, 0xc0, 0x0c)...)
	h2, e2 := append([]byte{0}, helloRandom(2)...), append([]byte{0}, helloRandom(2, 0xc0, 0x0c)...)
	f.Add(seed(h1, []byte{0x8c}, e1, []byte{0x90}, []byte{0x80}, append([]byte{0}, appData...),
		h2, []byte{0x9c}, e2, []byte{0x90}, []byte{0x80}, append([]byte{0}, appData...), []byte{0x84}))
	f.Add(seed(h1, []byte{0x8c}, e1, []byte{0x80}, append([]byte{0}, serverAlert...), append([]byte{0}, appData...)))

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
		r, err := New(pc, netip.MustParseAddrPort("127.0.0.1:9"),
			WithMaxAssociations(2), WithMaxUnverified(2), WithCloseLinger(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		defer endAll(r)
		r.dial = func() (net.Conn, error) { return newFakeUpstream(), nil }
		// settled waits until the sockets open are exactly the machine's
		// associations: pumps of ended associations have returned.
		settled := func(what string) {
			deadline := time.Now().Add(5 * time.Second)
			for {
				r.sh.Lock()
				g := r.sm.Gauges()
				open := len(r.all)
				r.sh.Unlock()
				total := g.Unverified + g.Handshaking + g.Established + g.Closing
				if open == total {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %d upstream sockets open for %d associations", what, open, total)
				}
				time.Sleep(time.Millisecond)
			}
		}
		kinds := [][]byte{serverFinished, serverAlert, serverRefusal, serverHVR, serverHello, serverData}

		for len(in) >= 2 {
			op, n := in[0], int(in[1])
			in = in[2:]
			n = min(n, len(in))
			data := in[:n]
			in = in[n:]
			client := clients[op&3]
			mine := associations(r, client)

			if op&0x80 != 0 {
				if len(mine) == 0 {
					continue
				}
				u := mine[int(op>>4&7)%len(mine)]
				d := kinds[int(op>>2&3+op>>5&1*4)%len(kinds)]
				before := u.a.State()
				fake(u).serve(t, d)
				settled("after the server spoke")
				if record.CarriesClosingAlert(d) {
					if st := u.a.State(); st != assoc.Ended {
						t.Fatalf("a server alert left the association %v", st)
					}
					others := associations(r, client)
					proved := false
					for _, o := range others {
						proved = proved || o.a.State() != assoc.Unverified
					}
					if (before == assoc.Established || before == assoc.Closing) && !proved && !r.table.Quiet(client) {
						t.Fatalf("%v not quiet after the server closed its completed association", client)
					}
				}
				continue
			}

			writes := map[*fakeUpstream]int{}
			r.sh.Lock()
			for o := range r.all {
				writes[fake(o)] = fake(o).count()
			}
			r.sh.Unlock()
			rec := record.Inspect(data)
			// A ClientHello opens an association; so does a record with a
			// CID from a client without one that is not quiet (rule 12).
			opens := rec.OpensAssociation() || rec.Protected() && record.HasConnectionID(data) && !r.table.Quiet(client)
			r.handleOne(data, client)
			settled("after a client datagram")
			var problem string
			r.sh.Lock()
			for o := range r.all {
				got := fake(o).count() - writes[fake(o)]
				switch {
				case got > 1:
					problem = fmt.Sprintf("%x written %d times on one socket", data, got)
				case got == 1 && o.client != client:
					problem = fmt.Sprintf("%x from %v written to %v's association", data, client, o.client)
				case got == 1 && len(mine) == 0 && !opens:
					problem = fmt.Sprintf("%x, which opens nothing, from a client without an association reached a server", data)
				case fake(o).sentEarly() && !(o.a != nil && o.a.Adopted()):
					// An adopted association (rule 12) forwards its
					// client's protected records before the server spoke.
					problem = fmt.Sprintf("%x: a server was sent a protected record before it answered", data)
				}
			}
			r.sh.Unlock() // before failing: endAll takes it
			if problem != "" {
				t.Fatal(problem)
			}
		}
	})
}

// endAll is Close without closing the shared listening socket: every
// association ends and its pump returns before the next execution.
func endAll(r *Relay) {
	r.sh.Lock()
	r.closed = true
	r.sh.StopLocked()
	for u := range r.all {
		u.close()
	}
	r.sh.Unlock()
	r.wg.Wait()
}
