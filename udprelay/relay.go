// Package udprelay is a loopback UDP relay for testing DTLS servers: it
// sits between clients and a server and decides, datagram by datagram, to
// forward, hold back, drop, delay or duplicate. Tests use it to make UDP's
// reordering deterministic (hold a close_notify until the server has
// closed, then release it) instead of hoping for a lucky schedule; its
// Chaos hook is a seeded lossy, duplicating, reordering network. This
// project's tests and its race demo (examples/race) run on it, and so can
// yours: it needs nothing but loopback.
//
// Like a NAT, the relay gives every client address its own upstream socket,
// so the server sees one distinct peer per client and a client that reuses
// its port reappears with the same upstream address.
package udprelay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Dir is the direction a datagram travels.
type Dir uint8

// Directions.
const (
	ToServer Dir = iota
	ToClient
)

func (d Dir) String() string {
	if d == ToServer {
		return "client→server"
	}
	return "server→client"
}

// Packet is a datagram the relay is about to forward. Data is only valid
// during the hook call.
type Packet struct {
	Dir    Dir
	Client netip.AddrPort // the client's address as the relay sees it
	Data   []byte
}

// Verdict tells the relay what to do with a Packet. The zero Verdict
// forwards it at once.
type Verdict struct {
	Drop   bool          // discard it
	Hold   bool          // keep it until Release
	Delay  time.Duration // forward it after this long
	Copies int           // forward this many extra copies (each after Delay)
}

// Hook decides the fate of each datagram. It runs on the relay's reading
// goroutines (one per direction per client) and must be safe for concurrent
// use.
type Hook func(Packet) Verdict

// Relay forwards datagrams between clients and one server.
type Relay struct {
	front  *net.UDPConn
	server netip.AddrPort
	hook   Hook

	// marker sends Flush's marker datagrams; flushed is signalled when one
	// comes out of the front socket's queue.
	marker  *net.UDPConn
	flushMu sync.Mutex
	flushed chan struct{}

	mu      sync.Mutex
	clients map[netip.AddrPort]*upstream
	held    []heldPacket
	timers  sync.WaitGroup
	closed  bool
	wg      sync.WaitGroup
}

type upstream struct {
	conn   *net.UDPConn
	client netip.AddrPort
}

type heldPacket struct {
	dir    Dir
	client netip.AddrPort
	data   []byte
}

// New starts a relay on the loopback address of server's family. A nil hook
// forwards everything.
func New(server netip.AddrPort, hook Hook) (*Relay, error) {
	if !server.IsValid() {
		return nil, fmt.Errorf("udprelay: server address %v is not valid", server)
	}
	front, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopbackOf(server.Addr()), 0)))
	if err != nil {
		return nil, fmt.Errorf("udprelay: listen: %w", err)
	}
	if hook == nil {
		hook = func(Packet) Verdict { return Verdict{} }
	}
	marker, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopbackOf(server.Addr()), 0)))
	if err != nil {
		front.Close()
		return nil, fmt.Errorf("udprelay: listen: %w", err)
	}
	r := &Relay{front: front, server: server, hook: hook, marker: marker, flushed: make(chan struct{}, 1), clients: map[netip.AddrPort]*upstream{}}
	r.wg.Add(1)
	go r.readFront()
	return r, nil
}

func loopbackOf(a netip.Addr) netip.Addr {
	if a.Is4() || a.Is4In6() {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.IPv6Loopback()
}

// Addr is where clients send.
func (r *Relay) Addr() netip.AddrPort { return r.front.LocalAddr().(*net.UDPAddr).AddrPort() }

// ServerSide returns the address the server sees for client, once the
// client has sent its first datagram.
func (r *Relay) ServerSide(client netip.AddrPort) (netip.AddrPort, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.clients[client]
	if !ok {
		return netip.AddrPort{}, false
	}
	return u.conn.LocalAddr().(*net.UDPAddr).AddrPort(), true
}

// Release forwards every held datagram, in the order they were held, and
// returns how many it sent.
func (r *Relay) Release() int {
	r.mu.Lock()
	held := r.held
	r.held = nil
	r.mu.Unlock()
	for _, h := range held {
		r.send(h.dir, h.client, h.data)
	}
	return len(held)
}

// Inject sends data as if the client had sent it (ToServer) or as if the
// server had (ToClient), bypassing the hook: a test's way to replay a late
// record from the client's address.
func (r *Relay) Inject(dir Dir, client netip.AddrPort, data []byte) {
	r.send(dir, client, data)
}

// Flush returns once the relay has handled every datagram that clients sent
// to it before the call: it sends a marker through the same socket queue
// and waits for it to come out.
func (r *Relay) Flush() error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	if _, err := r.marker.WriteToUDPAddrPort([]byte{0}, r.Addr()); err != nil {
		return err
	}
	select {
	case <-r.flushed:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("udprelay: flush marker lost")
	}
}

func (r *Relay) markerAddr() netip.AddrPort {
	a := r.marker.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Held returns how many datagrams are held now.
func (r *Relay) Held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// Close stops the relay and waits for its goroutines and pending delayed
// datagrams.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	ups := make([]*upstream, 0, len(r.clients))
	for _, u := range r.clients {
		ups = append(ups, u)
	}
	r.mu.Unlock()
	err := r.front.Close()
	r.marker.Close()
	for _, u := range ups {
		u.conn.Close()
	}
	r.wg.Wait()
	r.timers.Wait()
	return err
}

func (r *Relay) readFront() {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, client, err := r.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
		if client == r.markerAddr() {
			r.flushed <- struct{}{}
			continue
		}
		if _, err := r.upstreamFor(client); err != nil {
			continue
		}
		r.handle(ToServer, client, buf[:n])
	}
}

func (r *Relay) upstreamFor(client netip.AddrPort) (*upstream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, net.ErrClosed
	}
	if u, ok := r.clients[client]; ok {
		return u, nil
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.server))
	if err != nil {
		return nil, err
	}
	u := &upstream{conn: conn, client: client}
	r.clients[client] = u
	r.wg.Add(1)
	go r.readUpstream(u)
	return u, nil
}

// Rebind gives client a new upstream socket, so the server sees it come
// from a new port, and closes the old one, as a NAT does whose mapping
// expired: what the server still sends to the old port is lost. It
// returns the new address the server sees.
func (r *Relay) Rebind(client netip.AddrPort) (netip.AddrPort, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.clients[client]
	if !ok || r.closed {
		return netip.AddrPort{}, fmt.Errorf("udprelay: rebind %v: no such client", client)
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.server))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("udprelay: rebind %v: %w", client, err)
	}
	u := &upstream{conn: conn, client: client}
	r.clients[client] = u
	old.conn.Close()
	r.wg.Add(1)
	go r.readUpstream(u)
	return conn.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}

func (r *Relay) readUpstream(u *upstream) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := u.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP port unreachable and the like
		}
		r.handle(ToClient, u.client, buf[:n])
	}
}

func (r *Relay) handle(dir Dir, client netip.AddrPort, data []byte) {
	v := r.hook(Packet{Dir: dir, Client: client, Data: data})
	if v.Drop {
		return
	}
	if v.Hold {
		r.mu.Lock()
		r.held = append(r.held, heldPacket{dir, client, append([]byte(nil), data...)})
		r.mu.Unlock()
		return
	}
	copies := 1 + max(v.Copies, 0)
	if v.Delay <= 0 {
		for range copies {
			r.send(dir, client, data)
		}
		return
	}
	data = append([]byte(nil), data...)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.timers.Add(1)
	r.mu.Unlock()
	time.AfterFunc(v.Delay, func() {
		defer r.timers.Done()
		for range copies {
			r.send(dir, client, data)
		}
	})
}

func (r *Relay) send(dir Dir, client netip.AddrPort, data []byte) {
	// The write to the server happens under the lock, so that Rebind,
	// which closes the client's old socket, comes before or after it, not
	// during: a datagram the hook let through is then always written (from
	// the old port or the new one), and a chaos run can account for every
	// one (Chaos.Sent).
	r.mu.Lock()
	u := r.clients[client]
	if u == nil {
		r.mu.Unlock()
		return
	}
	if dir == ToServer {
		_, _ = u.conn.Write(data)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	_, _ = r.front.WriteToUDPAddrPort(data, client)
}
