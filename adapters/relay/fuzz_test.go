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
	in      chan []byte
	closed  chan struct{}
	once    sync.Once
	mu      sync.Mutex
	written int
}

func newFakeUpstream() *fakeUpstream {
	return &fakeUpstream{in: make(chan []byte, 16), closed: make(chan struct{})}
}

func (f *fakeUpstream) Read(b []byte) (int, error) {
	select {
	case d := <-f.in:
		return copy(b, d), nil
	case <-f.closed:
		return 0, net.ErrClosed
	}
}

func (f *fakeUpstream) Write(b []byte) (int, error) {
	select {
	case <-f.closed:
		return 0, net.ErrClosed
	default:
	}
	f.mu.Lock()
	f.written++
	f.mu.Unlock()
	return len(b), nil
}

func (f *fakeUpstream) Close() error        { f.once.Do(func() { close(f.closed) }); return nil }
func (f *fakeUpstream) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (f *fakeUpstream) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
}
func (f *fakeUpstream) SetDeadline(time.Time) error      { return nil }
func (f *fakeUpstream) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeUpstream) SetWriteDeadline(time.Time) error { return nil }

var serverAlert = []byte{0x15, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 3, 0, 2, 0xaa, 0xbb}

// FuzzRelayPackets feeds the relay's packet handling a fuzzed sequence of
// client datagrams and server alerts for four clients, with a cap of two
// associations, and checks after every step: no panic, the cap holds, only
// a datagram that opens an association creates one, a quiet client's
// non-opening datagram never reaches the server, and a server alert ends
// the association and quiets the client.
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
	f.Add(seed(append([]byte{0}, hello...), []byte{0x80}, append([]byte{0}, serverAlert...), append([]byte{1}, hello...)))
	f.Add(seed(append([]byte{2}, hello...), append([]byte{2}, 0x17, 0xfe, 0xfd, 0, 1), []byte{0x82}, []byte{2, 0x17}))
	f.Add(seed(append([]byte{0}, hello...), append([]byte{1}, hello...), append([]byte{2}, hello...), []byte{3}))

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
		defer endAll(r)
		r.dial = func() (net.Conn, error) { return newFakeUpstream(), nil }

		for len(in) >= 2 {
			op, n := in[0], int(in[1])
			in = in[2:]
			n = min(n, len(in))
			data := in[:n]
			in = in[n:]
			client := clients[op&3]

			r.mu.Lock()
			a := r.assocs[client]
			r.mu.Unlock()
			if op&0x80 != 0 {
				// The server sends a closing alert on the client's association.
				if a == nil {
					continue
				}
				up := a.up.(*fakeUpstream)
				up.in <- serverAlert
				// end removes the association and quiets the client before
				// it closes the upstream socket.
				select {
				case <-up.closed:
				case <-time.After(5 * time.Second):
					t.Fatal("the server's alert did not end the association")
				}
				r.mu.Lock()
				still := r.assocs[client] == a
				r.mu.Unlock()
				if still {
					t.Fatalf("%v's association outlived the server's alert", client)
				}
				if !r.table.Quiet(client) {
					t.Fatalf("%v not quiet after the server's alert", client)
				}
				continue
			}
			quiet := r.table.Quiet(client)
			var before int
			if a != nil {
				up := a.up.(*fakeUpstream)
				up.mu.Lock()
				before = up.written
				up.mu.Unlock()
			}
			opens := strayfilter.Inspect(data).OpensAssociation()
			r.handleClient(data, client)

			r.mu.Lock()
			after := r.assocs[client]
			count := len(r.assocs)
			r.mu.Unlock()
			if count > 2 {
				t.Fatalf("%d associations with a cap of 2", count)
			}
			if a == nil && after != nil && !opens {
				t.Fatalf("a datagram that opens nothing (%x) created an association", data)
			}
			if a != nil && after != a {
				t.Fatalf("a client datagram (%x) replaced or ended a live association", data)
			}
			if a == nil && quiet && !opens && after != nil {
				t.Fatalf("a quiet client's stray (%x) reached the server", data)
			}
			if after != nil {
				if a != nil {
					up := after.up.(*fakeUpstream)
					up.mu.Lock()
					w := up.written
					up.mu.Unlock()
					if w != before+1 {
						t.Fatalf("live association's datagram not forwarded exactly once (%d → %d)", before, w)
					}
				}
			}
		}
	})
}

// endAll is Close without closing the shared listening socket: every
// association ends and its pump returns before the next execution.
func endAll(r *Relay) {
	r.mu.Lock()
	r.closed = true
	for _, a := range r.assocs {
		a.up.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
