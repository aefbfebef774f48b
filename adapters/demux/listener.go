package demux

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/straydtls/straydtls/strayfilter"
)

// ErrListenerClosed is returned by Accept after Close. It matches
// net.ErrClosed, and io.EOF, which is how go-coap's DTLS server recognises
// a closed listener.
var ErrListenerClosed = fmt.Errorf("demux: listener closed: %w (%w)", net.ErrClosed, io.EOF)

// Handshake runs the server side of a DTLS handshake over c and returns the
// established connection. It must return when ctx ends. On error it
// returns a nil net.Conn and the listener closes c.
type Handshake func(ctx context.Context, c *Conn) (net.Conn, error)

// Listener is a net.Listener for a DTLS stack over one filtered socket.
// A per-peer Conn is created only for a datagram that opens an association;
// its handshake runs at once in its own goroutine, bounded in number and
// time, and Accept returns connections in the order their handshakes
// complete, so a slow or bogus handshake never holds up other clients.
type Listener struct {
	m        *mux
	hs       Handshake
	acceptCh chan net.Conn
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

var _ net.Listener = (*Listener)(nil)

// NewListener serves DTLS on pc, which it owns, running hs for every new
// association. The pion adapters are built on it; any Go DTLS stack that
// can run a server handshake over a net.Conn can be.
func NewListener(pc net.PacketConn, hs Handshake, opts ...Option) (*Listener, error) {
	if hs == nil {
		return nil, invalid("handshake function is nil")
	}
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		hs:       hs,
		acceptCh: make(chan net.Conn, cfg.backlog),
		done:     make(chan struct{}),
	}
	l.m, err = newMux(pc, cfg, false, l.startHandshake)
	if err != nil {
		return nil, err
	}
	l.m.run()
	return l, nil
}

// startHandshake runs the handshake of a new association. The machine has
// already bounded how many there are: unverified ones by eviction, verified
// ones by the cap on cookie echoes.
func (l *Listener) startHandshake(c *Conn) {
	l.wg.Add(1)
	go l.handshake(c)
}

func (l *Listener) handshake(c *Conn) {
	defer l.wg.Done()
	// The machine ends the association at its timeout, which closes c and
	// so ends the handshake; the deadline here only makes sure of it.
	ctx, cancel := context.WithTimeout(c.ctx, l.m.cfg.handshakeTimeout)
	dc, err := l.hs(ctx, c)
	cancel()
	if err != nil {
		c.Close()
		l.m.stats.handshakeFailed.Add(1)
		l.log("handshake failed", c, slog.Any("err", err))
		return
	}
	if !l.m.completed(c) {
		// Ended while its handshake ran (evicted, timed out, closed).
		dc.Close()
		return
	}
	select {
	case <-l.done:
		dc.Close()
		return
	default:
	}
	select {
	case l.acceptCh <- dc:
	default:
		dc.Close()
		l.m.stats.backlogOverflow.Add(1)
		l.log("closed an established connection: accept backlog full", c)
	}
}

// Accept returns the next connection whose handshake completed.
func (l *Listener) Accept() (net.Conn, error) { return l.AcceptWithContext(context.Background()) }

// AcceptWithContext is Accept that also returns when ctx ends, with ctx's
// error. It is the method go-coap's DTLS server (dtls/server.Listener)
// takes a listener by.
func (l *Listener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	select {
	case dc := <-l.acceptCh:
		l.m.stats.accepted.Add(1)
		return dc, nil
	case <-l.done:
		return nil, ErrListenerClosed
	case <-l.m.readDone:
		return nil, l.m.acceptErr(l.done)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops accepting: pending handshakes are abandoned and connections
// not yet accepted are closed. Accepted connections live on; the socket
// closes with the last of them, as with pion's listener.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.m.stop() // abandons handshakes under way
		l.m.stopAccepting()
		l.wg.Wait()
		for {
			select {
			case dc := <-l.acceptCh:
				dc.Close()
			default:
				return
			}
		}
	})
	return nil
}

// Addr returns the socket's local address.
func (l *Listener) Addr() net.Addr { return l.m.fc.LocalAddr() }

// Filter returns the strayfilter.Conn under the listener.
func (l *Listener) Filter() *strayfilter.Conn { return l.m.fc }

// Stats returns the listener's counters.
func (l *Listener) Stats() Stats { return l.m.snapshot() }

func (l *Listener) log(msg string, c *Conn, attrs ...slog.Attr) {
	lg := l.m.cfg.logger
	if lg == nil || !lg.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs = append(attrs, slog.String("peer", c.Peer().String()), slog.Bool("rehandshake", c.a.Rehandshake()))
	lg.LogAttrs(context.Background(), slog.LevelDebug, "demux: "+msg, attrs...)
}

// acceptErr is Accept's error once the socket is gone: the listener's own
// Close closes it too, and then that is what Accept reports.
func (m *mux) acceptErr(done <-chan struct{}) error {
	select {
	case <-done:
		return ErrListenerClosed
	default:
		return fmt.Errorf("demux: socket read failed: %w", m.readErr)
	}
}

// PacketListener hands out per-peer Conns as soon as a ClientHello creates
// them, without running a handshake: it is the inner listener for pion/dtls
// v3's dtls.NewListener, which runs the handshake itself, lazily. Prefer
// Listener, which bounds handshakes and supports re-handshakes from the
// same address; a PacketListener cannot, because it does not see when a
// handshake completes.
type PacketListener struct {
	m        *mux
	acceptCh chan *Conn
	done     chan struct{}
	once     sync.Once
}

// NewPacketListener demultiplexes pc, which it owns. WithRehandshake does
// not apply; the handshake timeout ends associations whose handshake pion
// has not completed in time, as judged from what it sends.
func NewPacketListener(pc net.PacketConn, opts ...Option) (*PacketListener, error) {
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, err
	}
	cfg.rehandshake = false
	l := &PacketListener{acceptCh: make(chan *Conn, cfg.backlog), done: make(chan struct{})}
	// pion runs the handshake out of sight, so completion is inferred from
	// what it sends (package assoc, rule 7).
	l.m, err = newMux(pc, cfg, true, l.hand)
	if err != nil {
		return nil, err
	}
	l.m.run()
	return l, nil
}

func (l *PacketListener) hand(c *Conn) {
	select {
	case l.acceptCh <- c:
	default:
		l.m.stats.backlogOverflow.Add(1)
		c.Close()
	}
}

// Accept returns the next new association's Conn and its peer's address.
func (l *PacketListener) Accept() (net.PacketConn, net.Addr, error) {
	return l.AcceptWithContext(context.Background())
}

// AcceptWithContext is Accept that also returns when ctx ends, with ctx's
// error.
func (l *PacketListener) AcceptWithContext(ctx context.Context) (net.PacketConn, net.Addr, error) {
	select {
	case c := <-l.acceptCh:
		l.m.stats.accepted.Add(1)
		return c, c.RemoteAddr(), nil
	case <-l.done:
		return nil, nil, ErrListenerClosed
	case <-l.m.readDone:
		return nil, nil, l.m.acceptErr(l.done)
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// Close stops accepting and closes Conns not yet accepted; accepted ones
// live on and the socket closes with the last of them.
func (l *PacketListener) Close() error {
	l.once.Do(func() {
		l.m.stopAccepting()
		close(l.done)
		for {
			select {
			case c := <-l.acceptCh:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}

// Addr returns the socket's local address.
func (l *PacketListener) Addr() net.Addr { return l.m.fc.LocalAddr() }

// Filter returns the strayfilter.Conn under the listener.
func (l *PacketListener) Filter() *strayfilter.Conn { return l.m.fc }

// Stats returns the listener's counters.
func (l *PacketListener) Stats() Stats { return l.m.snapshot() }
