package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/strayfilter"
)

// maxDatagram is the largest UDP payload; DTLS stacks rarely send more than
// their path MTU, but a relay must not truncate what it is given.
const maxDatagram = 65535

// Relay forwards DTLS between clients and one upstream server, giving every
// client association its own upstream socket, and drops what clients send
// after the server closed their association. See the package documentation.
type Relay struct {
	cfg      config
	pc       *net.UDPConn
	upstream *net.UDPAddr
	table    *conntrack.Table
	log      *slog.Logger
	start    time.Time
	// dial opens the upstream socket of a new association. Tests replace it.
	dial func() (net.Conn, error)
	// ended, if set, is called with the upstream socket's address after an
	// association has ended. Tests use it to wait for pumps.
	ended func(upstream net.Addr)

	mu     sync.Mutex
	peers  map[netip.AddrPort]*peer
	count  int // associations, live and pending
	closed bool
	wg     sync.WaitGroup

	served    atomic.Bool
	lastWarn  [numWarnings]atomic.Int64
	counters  counters
	dropQuiet [strayfilter.NumReasons]atomic.Uint64
}

// peer is what one client addr:port has: its live association and, while
// the client runs a new handshake from the same addr:port, a pending one on
// its own upstream socket. A pending association is never without a live
// one: when the live one ends, the pending one takes its place.
type peer struct {
	live, pending *association
}

// association is one client association and its upstream socket.
type association struct {
	client netip.AddrPort
	up     net.Conn
	opened int64 // ns since Relay.start
	// random is the client random of the ClientHello that opened the
	// association, if it carried one (hasRandom).
	random    [32]byte
	hasRandom bool
	// last is when a datagram last crossed, either way (ns since start).
	last atomic.Int64
	// established is set once the server sent an encrypted record: the
	// handshake got past its clear-text part.
	established atomic.Bool
	// answered is set once the server sent anything on the association.
	answered atomic.Bool
	// replaced is set when a newer association from the same client
	// completed its handshake and took this one's place.
	replaced atomic.Bool
	toServer atomic.Uint64
	toClient atomic.Uint64
}

// Listen resolves upstream (a host name is resolved once, now), binds
// listen and returns a Relay ready to Serve. network is "udp", "udp4" or
// "udp6" and applies to both addresses.
func Listen(network, listen, upstream string, opts ...Option) (*Relay, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("relay: network %q: want udp, udp4 or udp6: %w", network, strayfilter.ErrInvalidOption)
	}
	up, err := net.ResolveUDPAddr(network, upstream)
	if err != nil {
		return nil, fmt.Errorf("relay: upstream %q: %w", upstream, err)
	}
	laddr, err := net.ResolveUDPAddr(network, listen)
	if err != nil {
		return nil, fmt.Errorf("relay: listen address %q: %w", listen, err)
	}
	pc, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("relay: listen on %q: %w", listen, err)
	}
	ap := up.AddrPort()
	r, err := New(pc, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), opts...)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return r, nil
}

// New returns a Relay that reads clients from pc and forwards them to
// upstream. The Relay owns pc from now on.
func New(pc *net.UDPConn, upstream netip.AddrPort, opts ...Option) (*Relay, error) {
	if pc == nil {
		return nil, fmt.Errorf("relay: nil listening socket: %w", strayfilter.ErrInvalidOption)
	}
	if !upstream.IsValid() || upstream.Port() == 0 {
		return nil, fmt.Errorf("relay: upstream %v: need an address and a non-zero port: %w", upstream, conntrack.ErrInvalidPeer)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	table := cfg.table
	if table == nil {
		var err error
		table, err = conntrack.New(conntrack.WithQuietPeriod(cfg.quiet), conntrack.WithMaxEntries(cfg.maxQuiet))
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
	}
	log := cfg.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	up := net.UDPAddrFromAddrPort(upstream)
	r := &Relay{
		cfg:      cfg,
		pc:       pc,
		upstream: up,
		table:    table,
		log:      log,
		start:    time.Now(),
		peers:    make(map[netip.AddrPort]*peer),
	}
	r.dial = func() (net.Conn, error) { return net.DialUDP("udp", nil, up) }
	return r, nil
}

// Addr is the address clients send to.
func (r *Relay) Addr() net.Addr { return r.pc.LocalAddr() }

// Upstream is the server's address, as resolved when the Relay was made.
func (r *Relay) Upstream() netip.AddrPort { return r.upstream.AddrPort() }

// Table is the quiet-client table, for inspection or sharing.
func (r *Relay) Table() *conntrack.Table { return r.table }

// ErrServing is returned by a second call to Serve.
var ErrServing = errors.New("relay: already serving")

// Serve relays until Close, then returns nil. A read error other than the
// socket closing ends it with that error (after closing the relay).
func (r *Relay) Serve() error {
	if !r.served.CompareAndSwap(false, true) {
		return ErrServing
	}
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := r.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if r.isClosed() || errors.Is(err, net.ErrClosed) {
				r.Close()
				return nil
			}
			if transient(err) {
				// ICMP errors for an earlier WriteTo surface on Linux as a
				// read error on an unconnected socket; they end nothing.
				continue
			}
			r.Close()
			return fmt.Errorf("relay: reading clients: %w", err)
		}
		r.handleClient(buf[:n], from)
	}
}

func transient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, os.ErrDeadlineExceeded)
}

// handleClient forwards one client datagram or drops it. It runs on the
// Serve goroutine only, so associations are opened by one goroutine.
func (r *Relay) handleClient(d []byte, from netip.AddrPort) {
	r.counters.fromClients.Add(1)
	var live, pending *association
	r.mu.Lock()
	if p := r.peers[from]; p != nil {
		live, pending = p.live, p.pending
	}
	r.mu.Unlock()
	if !r.cfg.filter {
		if live == nil {
			if live = r.open(from, d); live == nil {
				return
			}
		}
		r.forward(live, d)
		return
	}
	switch {
	case live == nil:
		if rec := strayfilter.Inspect(d); !rec.OpensAssociation() {
			// Only a ClientHello starts an association: anything else
			// from a client without one belongs to an association that
			// has ended, and a server would take it as a new one.
			r.drop(from, rec)
			return
		}
		if live = r.open(from, d); live != nil {
			r.forward(live, d)
		}
	case pending == nil:
		// The common case, a live association past its handshake, looks at
		// nothing but the first byte.
		if live.established.Load() && len(d) > 0 && d[0] == strayfilter.ContentTypeHandshake {
			// A ClientHello with a new random after the handshake: the
			// client starts a new association from the same addr:port (it
			// rebooted, RFC 6347 §4.2.8, or reconnected before the server's
			// close_notify for the old one got here). It gets its own
			// upstream socket, so nothing of the old association (that
			// close_notify above all, which ends it) can reach or end the
			// new one. The old one stays live until the new handshake gets
			// past its clear-text part, so a spoofed ClientHello cuts
			// nothing. A ClientHello with the old random is a late copy of
			// the old handshake's own and goes where it belongs.
			if rnd, ok := strayfilter.ClientRandom(d); ok && (!live.hasRandom || rnd != live.random) {
				if pending = r.open(from, d); pending != nil {
					r.forward(pending, d)
				}
				return
			}
		}
		if !live.answered.Load() {
			if rec := strayfilter.Inspect(d); rec.Protected() {
				// Nothing protected can belong to a handshake whose server
				// has not answered yet: it is what the client's previous
				// association left in flight, and if the ClientHello was
				// lost the server would take it as a new connection.
				r.drop(from, rec)
				return
			}
		}
		r.forward(live, d)
	default:
		// While a new handshake is pending, its clear-text records go to it
		// alone; protected ones go to the live association and, once the
		// new one's server has answered, to it too (its client's Finished),
		// and each server discards what it cannot authenticate (RFC 6347
		// §4.1.2.7). Nothing in a datagram switches this routing: only the
		// new handshake progressing does.
		if rec := strayfilter.Inspect(d); rec.ClearText() {
			r.forward(pending, d)
			return
		}
		if pending.answered.Load() {
			r.forward(pending, d)
		}
		r.forward(live, d)
	}
}

// drop counts a client datagram that no association can take: a stray if
// the client is quiet, unknown otherwise.
func (r *Relay) drop(from netip.AddrPort, rec strayfilter.Record) {
	if r.table.Quiet(from) {
		r.dropQuiet[strayfilter.ReasonOf(rec)].Add(1)
	} else {
		r.counters.droppedUnknown.Add(1)
	}
}

// forward sends a client datagram to the server on a's upstream socket.
func (r *Relay) forward(a *association, d []byte) {
	a.last.Store(r.now())
	if _, err := a.up.Write(d); err != nil {
		// The association ended under us, or the server's host refused.
		r.counters.writeErrors.Add(1)
		r.warn(warnUpstreamWrite, "writing to upstream failed", "client", a.client, "err", err)
		return
	}
	a.toServer.Add(1)
	r.counters.toServer.Add(1)
}

// open starts an association for client on a fresh upstream socket: the
// client's live one, or its pending one if it has a live one. first is the
// datagram that opens it. It returns nil when the relay is closed, at its
// cap or cannot dial.
func (r *Relay) open(client netip.AddrPort, first []byte) *association {
	random, hasRandom := strayfilter.ClientRandom(first)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if r.count >= r.cfg.maxAssoc {
		r.counters.refused.Add(1)
		r.warn(warnRefused, "association refused: at the cap", "client", client, "max_associations", r.cfg.maxAssoc)
		return nil
	}
	up, err := r.dial()
	if err != nil {
		r.counters.dialErrors.Add(1)
		r.warn(warnDial, "opening an upstream socket failed", "client", client, "err", err)
		return nil
	}
	now := r.now()
	a := &association{client: client, up: up, opened: now, random: random, hasRandom: hasRandom}
	a.last.Store(now)
	p := r.peers[client]
	if p == nil {
		p = &peer{}
		r.peers[client] = p
	}
	if p.live == nil {
		p.live = a
	} else {
		p.pending = a
		r.counters.rehandshakes.Add(1)
	}
	r.count++
	r.counters.opened.Add(1)
	r.wg.Add(1)
	go r.pump(a)
	r.log.Debug("association opened", "client", client, "via", up.LocalAddr(), "pending", p.pending == a)
	return a
}

// pump forwards the server's datagrams to the client until the server
// closes the association, it times out, or the relay closes.
func (r *Relay) pump(a *association) {
	defer r.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		a.up.SetReadDeadline(r.start.Add(time.Duration(r.deadline(a))))
		n, err := a.up.Read(buf)
		if a.replaced.Load() {
			// What the old association's server still sends (its
			// close_notify) must not reach the client's new association.
			r.end(a, endReplaced)
			return
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if r.now() >= r.deadline(a) {
					if a.established.Load() {
						r.end(a, endIdle)
					} else {
						r.end(a, endHandshakeTimeout)
					}
					return
				}
				continue // a datagram moved the deadline
			}
			if transient(err) {
				// The server's port is closed (ICMP). It may come back; the
				// idle timeout ends the association if it does not.
				continue
			}
			r.end(a, endShutdown)
			return
		}
		d := buf[:n]
		a.last.Store(r.now())
		if !a.answered.Load() {
			a.answered.Store(true)
		}
		if !a.established.Load() && strayfilter.CarriesProtectedRecord(d) {
			a.established.Store(true)
			// Before the client sees the server's Finished, so that by the
			// time its handshake completes the old association is gone.
			r.promote(a)
		}
		if _, err := r.pc.WriteToUDPAddrPort(d, a.client); err != nil {
			r.counters.writeErrors.Add(1)
			r.warn(warnClientWrite, "writing to client failed", "client", a.client, "err", err)
		} else {
			a.toClient.Add(1)
			r.counters.toClient.Add(1)
		}
		if r.cfg.filter && strayfilter.CarriesClosingAlert(d) {
			r.end(a, endServerAlert)
			return
		}
	}
}

func (r *Relay) deadline(a *association) int64 {
	if a.established.Load() {
		return a.last.Load() + int64(r.cfg.idle)
	}
	return min(a.opened+int64(r.cfg.handshakeTimeout), a.last.Load()+int64(r.cfg.idle))
}

// promote makes a's handshake, pending until now, the client's live
// association and retires the one it replaces.
func (r *Relay) promote(a *association) {
	r.mu.Lock()
	p := r.peers[a.client]
	if p == nil || p.pending != a {
		r.mu.Unlock()
		return
	}
	old := p.live
	p.live, p.pending = a, nil
	old.replaced.Store(true)
	r.mu.Unlock()
	r.counters.replaced.Add(1)
	// Its pump sees the socket close and ends it.
	old.up.Close()
}

type endReason uint8

const (
	endServerAlert endReason = iota
	endIdle
	endHandshakeTimeout
	endShutdown
	endReplaced
)

var endNames = [...]string{"server-alert", "idle", "handshake-timeout", "shutdown", "replaced"}

// end removes the association and releases its socket. Only the server's
// alert makes the client quiet, and only if no other association of the
// client carries on: after an idle timeout nothing of the association is in
// flight, and at shutdown nothing is listening.
func (r *Relay) end(a *association, why endReason) {
	r.mu.Lock()
	if p := r.peers[a.client]; p != nil {
		switch a {
		case p.live:
			p.live = nil
		case p.pending:
			p.pending = nil
		}
		if p.live == nil && p.pending != nil {
			// The old association ended while the new one's handshake runs:
			// the new one carries on alone.
			p.live, p.pending = p.pending, nil
		}
		if p.live == nil {
			if why == endServerAlert {
				// Quiet before unrouted, so no datagram finds the client
				// neither routed nor quiet.
				r.table.Close(a.client)
			}
			delete(r.peers, a.client)
		}
	}
	r.count--
	r.mu.Unlock()
	a.up.Close()
	switch why {
	case endServerAlert:
		r.counters.serverClosed.Add(1)
	case endIdle:
		r.counters.idleClosed.Add(1)
	case endHandshakeTimeout:
		r.counters.handshakeTimeouts.Add(1)
	}
	r.log.Debug("association ended", "client", a.client, "reason", endNames[why],
		"duration", time.Duration(r.now()-a.opened), "to_server", a.toServer.Load(), "to_client", a.toClient.Load())
	if r.ended != nil {
		r.ended(a.up.LocalAddr())
	}
}

// Close stops the relay: the listening socket and every upstream socket
// close, and Close returns once every association has ended.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.wg.Wait()
		return nil
	}
	r.closed = true
	err := r.pc.Close()
	for _, p := range r.peers {
		p.live.up.Close()
		if p.pending != nil {
			p.pending.up.Close()
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

func (r *Relay) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *Relay) now() int64 { return int64(time.Since(r.start)) }

type warning uint8

const (
	warnRefused warning = iota
	warnDial
	warnUpstreamWrite
	warnClientWrite
	numWarnings
)

// warn logs at most one line per second per kind: a flood of refused
// ClientHellos must not become a flood of log lines. The counters keep the
// full count.
func (r *Relay) warn(kind warning, msg string, args ...any) {
	now := r.now()
	last := r.lastWarn[kind].Load()
	if last != 0 && now-last < int64(time.Second) || !r.lastWarn[kind].CompareAndSwap(last, now) {
		return
	}
	r.log.Warn(msg, args...)
}
