package relay

import (
	"context"
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
	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
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
	start    time.Time
	// dial opens the upstream socket of a new association. Tests replace it.
	dial func() (net.Conn, error)
	// ended, if set, is called with the upstream socket's address once an
	// association has ended and nothing more is forwarded on it. Tests use
	// it to wait for pumps.
	ended func(upstream net.Addr)

	mu sync.Mutex
	// sm decides; the Relay reads, forwards, opens and closes.
	sm     *assoc.Machine[*upstreamConn]
	all    map[*upstreamConn]struct{} // upstream sockets open
	naive  map[netip.AddrPort]*upstreamConn
	ending []*upstreamConn // what the machine ended during one call
	// closing is the server datagram the machine is being told about: the
	// alert it keeps for the client's quiet period if it ends the
	// association (WithCloseEcho).
	closing []byte
	timer   *time.Timer
	timerAt int64
	closed  bool
	wg      sync.WaitGroup
	// loop reads every upstream socket in one epoll loop (Linux), started
	// with the first association; noLoop keeps a goroutine per socket.
	loop   *pumpLoop
	noLoop bool

	served    atomic.Bool
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
	lc := net.ListenConfig{Control: reusePort}
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
		return nil, fmt.Errorf("relay: nil listening socket: %w", strayfilter.ErrInvalidOption)
	}
	if !upstream.IsValid() || upstream.Port() == 0 {
		return nil, fmt.Errorf("relay: upstream %v: need an address and a non-zero port: %w", upstream, conntrack.ErrInvalidPeer)
	}
	if err := notSelf(pc, upstream); err != nil {
		return nil, err
	}
	if cfg.readers != 1+len(extra) {
		return nil, invalid("WithReaders(%d) needs Listen, which opens the sockets; New reads the one it is given", cfg.readers)
	}
	table := cfg.table
	if table != nil && len(cfg.tableOpts) > 0 {
		return nil, invalid("%s conflicts with WithTable: a shared table has its own quiet period and cap", cfg.tableOpts[0])
	}
	if table == nil {
		var err error
		table, err = conntrack.New(conntrack.WithQuietPeriod(cfg.quiet), conntrack.WithMaxQuietPeers(cfg.maxQuiet))
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
		cfg:   cfg,
		pc:    pc,
		extra: extra,
		table: table,
		log:   log,
		start: time.Now(),
		all:   make(map[*upstreamConn]struct{}),
		naive: make(map[netip.AddrPort]*upstreamConn),
	}
	sm, err := assoc.New(assoc.Config{
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
		// The server behind may be any stack: it may use CIDs of a length
		// the relay cannot see, and may speak DTLS 1.3.
		CIDLength: record.CIDUnknown,
		DTLS13:    true,
	}, r.machineEnded)
	if err != nil {
		return nil, fmt.Errorf("relay: %w: %w", err, strayfilter.ErrInvalidOption)
	}
	r.sm = sm
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
		return fmt.Errorf("%w: listening on %v, upstream %v: %w", ErrUpstreamIsSelf, la, upstream, strayfilter.ErrInvalidOption)
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
		return fmt.Errorf("relay: upstream %v: need an address and a non-zero port: %w", upstream, conntrack.ErrInvalidPeer)
	}
	if err := notSelf(r.pc, upstream); err != nil {
		return err
	}
	r.upstream.Store(net.UDPAddrFromAddrPort(upstream))
	return nil
}

// Table is the quiet-client table, for inspection or sharing.
func (r *Relay) Table() *conntrack.Table { return r.table }

// ErrServing is returned by a second call to Serve.
var ErrServing = errors.New("relay: already serving")

// clientBatch is how many client datagrams one read takes (recvmmsg on
// Linux): under load the listening socket holds many, and each system call
// saved is one the clients' round trips do not wait for.
const clientBatch = 16

// Serve relays until Close, then returns nil. A read error other than the
// socket closing ends it with that error (after closing the relay).
func (r *Relay) Serve() error {
	if !r.served.CompareAndSwap(false, true) {
		return ErrServing
	}
	for _, pc := range r.extra {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := r.readClients(pc); err != nil {
				r.log.Error("reading clients failed; the relay stops", "err", err)
				go r.Close() // Close waits for this reader
			}
		}()
	}
	err := r.readClients(r.pc)
	r.Close()
	return err
}

// readClients reads one listening socket until it closes.
func (r *Relay) readClients(pc *net.UDPConn) error {
	// strayfilter.Conn is here for its batched read, which allocates
	// nothing (x/net's allocates an address per datagram). Its own table
	// stays empty, so it passes every datagram after one atomic load: the
	// relay's filtering is the association machine's, below.
	in, err := strayfilter.New(pc, strayfilter.WithMaxQuietPeers(1), strayfilter.WithAlertDetection(false))
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	b := strayfilter.NewBatch(clientBatch, maxDatagram)
	var routes [clientBatch]assoc.Route[*upstreamConn]
	var w upstreamWriter
	for {
		n, err := in.ReadBatchAddrPort(b)
		if err != nil {
			if r.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if transient(err) {
				// ICMP errors for an earlier WriteTo surface on Linux as a
				// read error on an unconnected socket; they end nothing.
				continue
			}
			return fmt.Errorf("relay: reading clients: %w", err)
		}
		for i := range n {
			b.Addrs[i] = netip.AddrPortFrom(b.Addrs[i].Addr().Unmap(), b.Addrs[i].Port())
		}
		r.handleClients(&w, b, n, routes[:n])
	}
}

func transient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, os.ErrDeadlineExceeded)
}

func (r *Relay) now() int64 { return int64(time.Since(r.start)) }

// handleClients forwards a batch of client datagrams where the machine
// routes them, or drops them: the machine decides for the whole batch under
// one lock, then the datagrams go out in order. It runs on the goroutine
// reading one listening socket; with WithReaders, several run at once,
// each for the clients the kernel hashes to its socket, with its own w.
func (r *Relay) handleClients(w *upstreamWriter, b *strayfilter.Batch, n int, routes []assoc.Route[*upstreamConn]) {
	r.counters.fromClients.Add(uint64(n))
	if !r.cfg.filter {
		for i := range n {
			r.handleNaive(w, b.Bufs[i][:b.N[i]], b.Addrs[i])
		}
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	now := r.now()
	for i := range n {
		rt := r.sm.Client(now, b.Addrs[i], b.Bufs[i][:b.N[i]])
		if rt.Open != nil && r.openLocked(rt.Open.Peer(), rt.Open) == nil {
			r.sm.Abort(rt.Open)
		}
		routes[i] = rt
	}
	ending := r.takeEndingLocked()
	r.mu.Unlock()
	for i := range n {
		d, rt := b.Bufs[i][:b.N[i]], &routes[i]
		if rt.N == 0 {
			r.drop(b.Addrs[i], d, rt.Drop)
			continue
		}
		sent, late := false, false
		for _, a := range rt.To[:rt.N] {
			u := a.Handle
			switch {
			case u == nil:
			case u.end.Load() != 0 && !rt.Ended:
				// The server closed it since the batch was routed (a pump
				// ran meanwhile): the server has gone back to waiting for
				// new clients, so the datagram is what it would be had it
				// been routed now, a stray. (A datagram that ended the
				// association itself, a client's fatal alert, still goes.)
				late = true
			default:
				r.forward(w, u, d)
				sent = true
			}
		}
		if late && !sent {
			r.drop(b.Addrs[i], d, assoc.DropNoAssociation)
		}
	}
	// Sockets of what the batch ended close after the forwards: a
	// datagram routed to an association before a later one ended it goes
	// out, as it did when each datagram was handled alone.
	r.closeEnded(ending)
}

// handleNaive is the relay without filtering (WithFiltering(false)): a
// plain per-client NAT, to show what the filtering prevents.
func (r *Relay) handleNaive(w *upstreamWriter, d []byte, from netip.AddrPort) {
	r.mu.Lock()
	u := r.naive[from]
	if u == nil && !r.closed {
		if u = r.openLocked(from, nil); u != nil {
			r.naive[from] = u
			r.counters.naiveOpened.Add(1)
		}
	}
	r.mu.Unlock()
	if u != nil {
		r.forward(w, u, d)
	}
}

// openLocked opens an upstream socket for the association a (nil for a
// naive one) and starts its pump. Called with r.mu held.
func (r *Relay) openLocked(client netip.AddrPort, a *assoc.Assoc[*upstreamConn]) *upstreamConn {
	conn, err := r.dial()
	if err != nil {
		r.counters.dialErrors.Add(1)
		if r.warnNow(warnDial) {
			r.log.Warn("opening an upstream socket failed", "client", client, "err", err)
		}
		return nil
	}
	u := &upstreamConn{a: a, client: client, conn: conn, opened: r.now()}
	if a != nil {
		a.Handle = u
	}
	r.all[u] = struct{}{}
	if !r.loopAdd(u) {
		r.wg.Add(1)
		go r.pump(u)
	}
	r.log.Debug("association opened", "client", client, "via", conn.LocalAddr())
	return u
}

// machineEnded is the machine's end callback, run with r.mu held.
func (r *Relay) machineEnded(a *assoc.Assoc[*upstreamConn], why assoc.EndReason, quiet bool) {
	if quiet {
		// Quiet before unrouted: nothing sees the client unrouted until
		// r.mu is released.
		var alert []byte
		if why == assoc.EndServerAlert && r.cfg.closeEcho {
			alert = r.closing
		}
		r.table.MarkClosedWithAlert(a.Peer(), alert)
	}
	if u := a.Handle; u != nil {
		u.end.Store(uint32(why) + 1)
		r.ending = append(r.ending, u)
	}
}

func (r *Relay) takeEndingLocked() []*upstreamConn {
	r.armLocked()
	if len(r.ending) == 0 {
		return nil
	}
	e := r.ending
	r.ending = nil
	return e
}

// closeEnded closes the sockets of ended associations; their pumps see
// the close and return, and the pump loop closes its own.
func (r *Relay) closeEnded(us []*upstreamConn) {
	for _, u := range us {
		r.release(u)
	}
}

// release closes u's socket, through the pump loop when it reads u.
func (r *Relay) release(u *upstreamConn) {
	if u.rc != nil {
		r.loop.retire(u)
		return
	}
	u.close()
}

// armLocked points the timer at the machine's next deadline, so timeouts
// end associations even when no datagram arrives.
func (r *Relay) armLocked() {
	due, ok := r.sm.NextDue()
	if !ok || due == r.timerAt || r.closed {
		return
	}
	r.timerAt = due
	d := time.Duration(due - r.now())
	if r.timer == nil {
		r.timer = time.AfterFunc(d, r.expire)
	} else {
		r.timer.Reset(d)
	}
}

func (r *Relay) expire() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.timerAt = -1
	r.sm.Expire(r.now())
	ending := r.takeEndingLocked()
	r.mu.Unlock()
	r.closeEnded(ending)
}

// drop counts a client datagram that no association takes.
func (r *Relay) drop(from netip.AddrPort, d []byte, why assoc.Drop) {
	switch {
	case why == assoc.DropInvalid:
		r.counters.droppedInvalid.Add(1)
	case why == assoc.DropRefused:
		// Counted by the machine; said at most once a second, because
		// an operator whose clients are turned away needs to know why.
		if r.warnNow(warnRefused) {
			r.log.Warn("refused a client that proved its address: every association is live or handshaking, none closing to reclaim",
				"client", from, "max_associations", r.cfg.maxAssoc, "fix", "raise -max-associations, or lower -idle so finished associations end sooner")
		}
	case r.table.Quiet(from):
		rec := record.Inspect(d)
		r.dropQuiet[rec.Reason()].Add(1)
		// Only a client with no association hears the old alert again:
		// one with a new handshake under way has moved on, and a forged
		// ClientHello from its address must not buy it silence, so the
		// quiet entry stays until its period ends.
		if r.cfg.closeEcho && why == assoc.DropNoAssociation {
			r.echo(from, len(d))
		}
	default:
		r.counters.droppedUnknown.Add(1)
	}
}

// echo sends a quiet client the server's closing alert again when its
// strays have earned it (conntrack.Table.Stray).
func (r *Relay) echo(client netip.AddrPort, size int) {
	var buf [conntrack.MaxAlert]byte
	n, ok := r.table.Stray(client, size, buf[:])
	if !ok {
		return
	}
	if _, err := r.pc.WriteToUDPAddrPort(buf[:n], client); err != nil {
		r.counters.writeErrors.Add(1)
		return
	}
	r.counters.echoes.Add(1)
}

// forward sends a client datagram to the server on u's socket.
func (r *Relay) forward(w *upstreamWriter, u *upstreamConn, d []byte) {
	if err := w.write(u, d); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return // the association ended under us: nothing to tell
		}
		if transient(err) {
			// An ICMP report for an earlier datagram, surfacing here.
			r.upstreamDown(u, err)
			return
		}
		r.counters.writeErrors.Add(1)
		if r.warnNow(warnUpstreamWrite) {
			r.log.Warn("writing to upstream failed", "client", u.client, "err", err)
		}
		return
	}
	u.toServer.Add(1)
	r.counters.toServer.Add(1)
}

// pump forwards the server's datagrams to the client until the machine
// ends the association (which closes its socket) or the relay closes: the
// goroutine per upstream socket that the pump loop (pumploop_linux.go)
// replaces where it can.
func (r *Relay) pump(u *upstreamConn) {
	defer r.wg.Done()
	defer r.pumpDone(u)
	read := upstreamReader(u.conn)
	var b batch
	for {
		if err := read(&b); err != nil {
			if transient(err) && !errors.Is(err, os.ErrDeadlineExceeded) {
				// The server's port is closed (ICMP). It may come back; the
				// machine's timeouts end the association if it does not.
				r.upstreamDown(u, err)
				continue
			}
			return
		}
		if r.fromServer(u, &b, nil) {
			return
		}
	}
}

// fromServer hands the machine what one read of u's socket returned,
// forwards what it lets through and releases the batch. It reports
// whether the machine ended the association. With out, the datagrams for
// the client are queued there (taking their buffers) and sent with the
// others of the pump loop's wake-up; without, each is sent now.
func (r *Relay) fromServer(u *upstreamConn, b *batch, out *sendQueue) bool {
	var verdicts [len(b.bufs)]assoc.Verdict
	// The machine sees every datagram the server queued before the
	// client sees any of them: a close_notify queued behind the last
	// reply quiets the client before the reply can prompt its own.
	ended := false
	if u.a != nil { // nil: a naive association
		r.mu.Lock()
		for i := 0; i < b.n && !ended; i++ {
			r.closing = b.datagram(i)
			verdicts[i] = r.sm.Server(r.now(), u.a, r.closing)
			ended = verdicts[i].Ended
		}
		r.closing = nil
		ending := r.takeEndingLocked()
		r.mu.Unlock()
		r.closeEnded(ending)
	}
	for i := range b.n {
		if u.a == nil || verdicts[i].Forward {
			if out != nil {
				out.add(u, b, i)
			} else {
				r.toClient(u, b.datagram(i))
			}
		}
		if u.a != nil && verdicts[i].Ended {
			break
		}
	}
	b.release()
	return ended
}

func (r *Relay) toClient(u *upstreamConn, d []byte) {
	if _, err := r.pc.WriteToUDPAddrPort(d, u.client); err != nil {
		r.clientWriteFailed(u.client, err)
		return
	}
	u.toClient.Add(1)
	r.counters.toClient.Add(1)
}

// clientWriteFailed counts a datagram the kernel would not send to client.
func (r *Relay) clientWriteFailed(client netip.AddrPort, err error) {
	r.counters.writeErrors.Add(1)
	if r.warnNow(warnClientWrite) {
		r.log.Warn("writing to client failed", "client", client, "err", err)
	}
}

// pumpDone releases what is left of u once its pump returns.
func (r *Relay) pumpDone(u *upstreamConn) {
	u.close()
	r.mu.Lock()
	if u.a != nil {
		// A socket error the machine did not cause (or shutdown): the
		// association ends here, quieting nobody.
		r.sm.Abort(u.a)
	} else if r.naive[u.client] == u {
		delete(r.naive, u.client)
	}
	delete(r.all, u)
	ending := r.takeEndingLocked()
	r.mu.Unlock()
	r.closeEnded(ending)
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		reason := "socket closed or relay stopped"
		if e := u.end.Load(); e != 0 {
			reason = assoc.EndReason(e - 1).String()
		}
		r.log.Debug("association ended", "client", u.client, "reason", reason,
			"duration", time.Duration(r.now()-u.opened), "to_server", u.toServer.Load(), "to_client", u.toClient.Load())
	}
	if r.ended != nil {
		r.ended(u.conn.LocalAddr())
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
	if r.timer != nil {
		r.timer.Stop()
	}
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
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

func (r *Relay) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

type warning uint8

const (
	warnDial warning = iota
	warnUpstreamWrite
	warnClientWrite
	warnUpstreamDown
	warnRefused
	numWarnings
)

// warnNow reports whether a warning of kind may be logged now: at most one
// line per second per kind, so that a flood of failures is not a flood of
// log lines (the counters keep the full count). Callers build the line
// only when it is, so a suppressed warning costs no allocation.
func (r *Relay) warnNow(kind warning) bool {
	now := r.now()
	last := r.lastWarn[kind].Load()
	return (last == 0 || now-last >= int64(time.Second)) && r.lastWarn[kind].CompareAndSwap(last, now)
}

// upstreamDown counts an ICMP report that the server refused a datagram or
// is unreachable, read on or written into u's socket.
func (r *Relay) upstreamDown(u *upstreamConn, err error) {
	r.counters.upstreamErrors.Add(1)
	if r.warnNow(warnUpstreamDown) {
		r.log.Warn("the upstream refused a datagram or is unreachable", "upstream", u.conn.RemoteAddr(), "client", u.client, "err", err)
	}
}
