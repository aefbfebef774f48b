package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/internal/shell"
	"github.com/straydtls/straydtls/internal/udpio"
	"github.com/straydtls/straydtls/record"
)

// maxDatagram is the largest UDP payload; DTLS stacks rarely send more than
// their path MTU, but a relay must not truncate what it is given.
const maxDatagram = 65535

// Relay forwards DTLS between clients and one upstream server, giving every
// client association its own upstream socket, and drops what clients send
// after the server closed their association. See the package documentation.
type Relay struct {
	cfg config
	pc  *net.UDPConn
	// extra are the listening sockets beyond pc (WithReaders), each read
	// by its own goroutine.
	extra []*net.UDPConn
	// upstream is where new associations go: SetUpstream replaces it, and
	// associations already open keep the address they were opened to.
	upstream atomic.Pointer[net.UDPAddr]
	table    *conntrack.Table
	log      *slog.Logger
	// dial opens the upstream socket of a new association. Tests replace it.
	dial func() (net.Conn, error)
	// ended, if set, is called with the upstream socket's address once an
	// association has ended and nothing more is forwarded on it. Tests use
	// it to wait for pumps.
	ended func(upstream net.Addr)

	// sm decides; the Relay reads, forwards, opens and closes. sh
	// serialises events into it; its lock guards what follows.
	sh     *shell.Shell[*upstreamConn]
	sm     *assoc.Machine[*upstreamConn]
	all    map[*upstreamConn]struct{} // upstream sockets open
	naive  map[netip.AddrPort]*upstreamConn
	closed bool
	wg     sync.WaitGroup
	// loop reads every upstream socket in one epoll loop (Linux), started
	// with the first association; noLoop keeps a goroutine per socket.
	loop   *pumpLoop
	noLoop bool

	served    atomic.Bool
	frz       freezer
	lastWarn  [numWarnings]atomic.Int64
	counters  counters
	dropQuiet [record.NumReasons]atomic.Uint64
}

// upstreamConn is one association's socket towards the server.
type upstreamConn struct {
	a        *assoc.Assoc[*upstreamConn]
	client   netip.AddrPort
	conn     net.Conn
	opened   int64
	toServer atomic.Uint64
	toClient atomic.Uint64
	// end is 0 while the machine has not ended it, then the machine's
	// reason plus one: its pump logs it, and a datagram routed to it before
	// is not forwarded.
	end  atomic.Uint32
	once sync.Once
	// rc is the socket's raw conn when the pump loop reads it (id is its
	// key there); nil when a goroutine does.
	id uint32
	rc syscall.RawConn
}

func (u *upstreamConn) close() { u.once.Do(func() { u.conn.Close() }) }

// Listen resolves upstream (a host name is resolved once, now), binds
// listen and returns a Relay ready to Serve. network is "udp", "udp4" or
// "udp6" and applies to both addresses.
func Listen(network, listen, upstream string, opts ...Option) (*Relay, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("relay: network %q: want udp, udp4 or udp6: %w", network, ErrInvalidOption)
	}
	up, err := net.ResolveUDPAddr(network, upstream)
	if err != nil {
		return nil, fmt.Errorf("relay: upstream %q: %w", upstream, err)
	}
	laddr, err := net.ResolveUDPAddr(network, listen)
	if err != nil {
		return nil, fmt.Errorf("relay: listen address %q: %w", listen, err)
	}
	// Options first: a bad one is reported before any socket is bound.
	cfg, err := configure(opts)
	if err != nil {
		return nil, err
	}
	pcs, err := listenReaders(network, laddr, cfg.readers)
	if err != nil {
		return nil, fmt.Errorf("relay: listen on %q: %w", listen, err)
	}
	ap := up.AddrPort()
	r, err := newRelay(pcs[0], pcs[1:], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), cfg)
	if err != nil {
		for _, pc := range pcs {
			pc.Close()
		}
		return nil, err
	}
	return r, nil
}

// listenReaders opens the listening socket, and n-1 more on the same
// address with SO_REUSEPORT when n > 1.
func listenReaders(network string, laddr *net.UDPAddr, n int) ([]*net.UDPConn, error) {
	if n == 1 {
		pc, err := net.ListenUDP(network, laddr)
		if err != nil {
			return nil, err
		}
		return []*net.UDPConn{pc}, nil
	}
	lc := net.ListenConfig{Control: udpio.ReusePort}
	var pcs []*net.UDPConn
	addr := laddr.String()
	for range n {
		c, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			for _, pc := range pcs {
				pc.Close()
			}
			return nil, err
		}
		pc := c.(*net.UDPConn)
		pcs = append(pcs, pc)
		addr = pc.LocalAddr().String() // the port the first one got
	}
	return pcs, nil
}

// ErrUpstreamIsSelf is returned when the upstream address is the relay's
// own: every ClientHello would come back to the relay as a new client.
var ErrUpstreamIsSelf = errors.New("relay: the upstream is the relay's own listening address")

// New returns a Relay that reads clients from pc and forwards them to
// upstream. The Relay owns pc from now on.
func New(pc *net.UDPConn, upstream netip.AddrPort, opts ...Option) (*Relay, error) {
	cfg, err := configure(opts)
	if err != nil {
		return nil, err
	}
	return newRelay(pc, nil, upstream, cfg)
}

// configure applies opts to the defaults.
func configure(opts []Option) (config, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return config{}, err
		}
	}
	return cfg, nil
}

func newRelay(pc *net.UDPConn, extra []*net.UDPConn, upstream netip.AddrPort, cfg config) (*Relay, error) {
	if pc == nil {
		return nil, fmt.Errorf("relay: nil listening socket: %w", ErrInvalidOption)
	}
	if !upstream.IsValid() || upstream.Port() == 0 {
		return nil, fmt.Errorf("relay: upstream %v: need an address and a non-zero port: %w", upstream, ErrInvalidOption)
	}
	if err := notSelf(pc, upstream); err != nil {
		return nil, err
	}
	if cfg.readers != 1+len(extra) {
		return nil, invalid("WithReaders(%d) needs Listen, which opens the sockets; New reads the one it is given", cfg.readers)
	}
	table, err := cfg.table.Table()
	if err != nil {
		return nil, invalidErr(err)
	}
	log := cfg.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	up := net.UDPAddrFromAddrPort(upstream)
	r := &Relay{
		cfg:   cfg,
		pc:    pc,
		extra: extra,
		table: table,
		log:   log,
		all:   make(map[*upstreamConn]struct{}),
		naive: make(map[netip.AddrPort]*upstreamConn),
	}
	r.frz.init()
	sm, err := assoc.New[*upstreamConn](assoc.Config{
		MaxUnverified:     cfg.maxUnverified,
		UnverifiedTimeout: cfg.unverifiedTimeout,
		MaxAssociations:   cfg.maxAssoc,
		HandshakeTimeout:  cfg.handshakeTimeout,
		IdleTimeout:       cfg.idle,
		CloseLinger:       cfg.linger,
		Rehandshake:       true,
		InferCompletion:   true,
		EndOnServerAlert:  true,
		EndOnClientAlert:  true,
		// A relay restarted cold lost its associations; a server that
		// follows CIDs takes their clients back (rule 12).
		AdoptCID: true,
		// The server behind may be any stack: it may use CIDs of a length
		// the relay cannot see, and may speak DTLS 1.3.
		CIDLength: record.CIDUnknown,
		DTLS13:    true,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: %w: %w", err, ErrInvalidOption)
	}
	r.sm = sm
	r.sh = shell.New(sm, shell.Handler[*upstreamConn]((*shellSide)(r)))
	r.setBuffers()
	r.upstream.Store(up)
	r.dial = func() (net.Conn, error) { return net.DialUDP("udp", nil, r.upstream.Load()) }
	return r, nil
}

// notSelf refuses an upstream that is the relay's own listening address,
// including a wildcard listener's port on any of the host's addresses.
func notSelf(pc *net.UDPConn, upstream netip.AddrPort) error {
	la, ok := pc.LocalAddr().(*net.UDPAddr)
	if !ok || la.Port != int(upstream.Port()) {
		return nil
	}
	lip, _ := netip.AddrFromSlice(la.IP)
	lip = lip.Unmap()
	up := upstream.Addr().Unmap()
	if lip == up || lip.IsUnspecified() && isLocal(up) {
		return fmt.Errorf("%w: listening on %v, upstream %v: %w", ErrUpstreamIsSelf, la, upstream, ErrInvalidOption)
	}
	return nil
}

func isLocal(a netip.Addr) bool {
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// Addr is the address clients send to.
func (r *Relay) Addr() net.Addr { return r.pc.LocalAddr() }

// Upstream is the server's address new associations are opened to.
func (r *Relay) Upstream() netip.AddrPort { return r.upstream.Load().AddrPort() }

// SetUpstream points new associations at upstream (a server that moved, a
// host name resolved again); associations already open stay with the
// address they were opened to, as their handshakes and keys belong to that
// server. It refuses what New refuses.
func (r *Relay) SetUpstream(upstream netip.AddrPort) error {
	upstream = netip.AddrPortFrom(upstream.Addr().Unmap(), upstream.Port())
	if !upstream.IsValid() || upstream.Port() == 0 {
		return fmt.Errorf("relay: upstream %v: need an address and a non-zero port: %w", upstream, ErrInvalidOption)
	}
	if err := notSelf(r.pc, upstream); err != nil {
		return err
	}
	r.upstream.Store(net.UDPAddrFromAddrPort(upstream))
	return nil
}

// Table is the quiet-client table, for inspection or sharing.
func (r *Relay) Table() *conntrack.Table { return r.table }

// Close stops the relay: the listening socket and every upstream socket
// close, and Close returns once every association has ended.
func (r *Relay) Close() error {
	r.sh.Lock()
	if r.closed {
		r.sh.Unlock()
		r.wg.Wait()
		return nil
	}
	r.closed = true
	r.frz.close()
	r.sh.StopLocked()
	err := r.pc.Close()
	for _, pc := range r.extra {
		pc.Close()
	}
	for u := range r.all {
		r.release(u)
	}
	if r.loop != nil {
		r.loop.stop()
	}
	r.sh.Unlock()
	r.wg.Wait()
	return err
}

func (r *Relay) isClosed() bool {
	r.sh.Lock()
	defer r.sh.Unlock()
	return r.closed
}
