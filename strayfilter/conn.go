package strayfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/record"
)

// Conn is a net.PacketConn that drops the leftovers of associations closed
// locally. Datagrams from peers that are not quiet are returned as the
// wrapped conn delivered them: same buffer, same address, nothing copied.
// All methods are safe for concurrent use.
type Conn struct {
	pc    net.PacketConn
	udp   *net.UDPConn // pc, when it is one: the typed fast paths use it
	batch batchConn    // recvmmsg/sendmmsg on udp, when it is set
	raw   syscall.RawConn
	table *conntrack.Table

	learnAlerts bool
	dropNonDTLS bool
	echo        bool
	exempt      func(netip.AddrPort, []byte) bool
	logger      *slog.Logger
	onDrop      func(netip.AddrPort, record.Reason)
	closed      atomic.Bool

	passed      [passStripes]passCounter // batch reads only: see Stats.Passed
	drops       [dropStripes]dropCounters
	closes      atomic.Uint64
	alertCloses atomic.Uint64
	forgets     atomic.Uint64
	echoes      atomic.Uint64
}

var _ net.PacketConn = (*Conn)(nil)

// Drop counters are striped by peer so that readers on several cores
// dropping different peers' strays do not bounce one cache line.
const dropStripes = 8

type dropCounters struct {
	n [record.NumReasons]atomic.Uint64
	_ [128 - record.NumReasons*8%128]byte
}

// Passed datagrams are counted per batch, in a stripe of the batch's own,
// so that batch readers on several cores each write their own cache line.
const passStripes = 8

type passCounter struct {
	n atomic.Uint64
	_ [120]byte
}

// New wraps pc. The returned Conn can replace pc anywhere a net.PacketConn is
// used; it owns pc from now on (closing the Conn closes pc).
func New(pc net.PacketConn, opts ...Option) (*Conn, error) {
	if pc == nil {
		return nil, invalid("packet conn is nil")
	}
	var cfg config
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	table, err := cfg.buildTable()
	if err != nil {
		return nil, err
	}
	c := &Conn{
		pc:          pc,
		table:       table,
		learnAlerts: !cfg.noAlerts,
		dropNonDTLS: cfg.dropNonDTLS,
		echo:        cfg.echo,
		exempt:      cfg.exempt,
		logger:      cfg.logger,
		onDrop:      cfg.onDrop,
	}
	if c.udp, _ = pc.(*net.UDPConn); c.udp != nil {
		c.batch = newBatchConn(c.udp)
		if c.raw, err = c.udp.SyscallConn(); err != nil {
			return nil, fmt.Errorf("strayfilter: %w", err)
		}
	}
	return c, nil
}

// Table returns the table of quiet peers, possibly shared (WithTable).
func (c *Conn) Table() *conntrack.Table { return c.table }

// ReadFrom reads the next datagram that is not a leftover of a closed
// association. A datagram from a quiet peer that does not open a new
// association is dropped and the read goes on; deadlines set on the Conn
// still end the read on time. A datagram that fills b may have been cut
// short (UDP truncates silently), and what the filter would read of it is
// not what was sent, so it passes; the typed and batch reads do the same.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	// The common case first and alone: small enough to cost a load and a
	// branch over the wrapped read; everything else is readFrom.
	n, addr, err := c.pc.ReadFrom(b)
	if err == nil && c.table.Empty() {
		return n, addr, nil
	}
	return c.readFrom(b, n, addr, err)
}

func (c *Conn) readFrom(b []byte, n int, addr net.Addr, err error) (int, net.Addr, error) {
	for {
		if err != nil {
			return n, addr, c.readErr(err)
		}
		if c.table.Empty() || n >= len(b) || !c.dropAddr(addr, b[:n]) {
			return n, addr, nil
		}
		n, addr, err = c.pc.ReadFrom(b)
	}
}

// WriteTo writes b to addr. If b carries a closing alert (see
// CarriesClosingAlert) and alert detection is on, addr enters its quiet
// period before the datagram leaves, so that no reply can overtake it.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.learnAlerts && record.CarriesClosingAlert(b) {
		if ap, ok := addrPort(addr); ok {
			c.closeFromAlert(ap, b)
		}
	}
	return c.pc.WriteTo(b, addr)
}

// MarkClosed puts addr into its quiet period now, or restarts it. Call it
// when the DTLS stack closes an association in a way the Conn cannot see
// (DTLS 1.3, tls12_cid, a stack that closes without an alert).
func (c *Conn) MarkClosed(addr net.Addr) error {
	ap, ok := addrPort(addr)
	if !ok {
		return fmt.Errorf("strayfilter: MarkClosed(%v): not a UDP address with an IP and port: %w", addr, conntrack.ErrInvalidPeer)
	}
	return c.MarkClosedAddrPort(ap)
}

// MarkClosedAddrPort is MarkClosed for a netip.AddrPort.
func (c *Conn) MarkClosedAddrPort(ap netip.AddrPort) error {
	return c.MarkClosedWithAlert(ap, nil)
}

// MarkClosedWithAlert is MarkClosedAddrPort that also hands the filter
// the closing alert the stack sent the peer (its close_notify or fatal
// alert datagram, as written), for WithCloseEcho to send again when the
// peer's strays show it missed it. Without WithCloseEcho the alert is not
// kept.
func (c *Conn) MarkClosedWithAlert(ap netip.AddrPort, alert []byte) error {
	return c.MarkClosedWith(ap, conntrack.Closure{Alert: alert})
}

// MarkClosedWith is MarkClosedAddrPort with what the caller knows of the
// association that ended: its closing alert (as MarkClosedWithAlert), and
// its handshake's client random, so that a late copy of its ClientHello
// is dropped too instead of ending the quiet period.
func (c *Conn) MarkClosedWith(ap netip.AddrPort, cl conntrack.Closure) error {
	cl.Alert = c.keep(cl.Alert)
	if err := c.table.Close(ap, cl); err != nil {
		return fmt.Errorf("strayfilter: MarkClosed: %w", err)
	}
	c.closes.Add(1)
	return nil
}

// keep is the alert the table should keep for a quiet peer: none without
// WithCloseEcho, where nothing would send it and it would cost each quiet
// peer 148 bytes.
func (c *Conn) keep(alert []byte) []byte {
	if !c.echo {
		return nil
	}
	return alert
}

// closeFromAlert quiets ap for the closing alert b our side is sending it.
func (c *Conn) closeFromAlert(ap netip.AddrPort, b []byte) {
	if c.table.MarkClosedWithAlert(ap, c.keep(b)) == nil {
		c.closes.Add(1)
		c.alertCloses.Add(1)
	}
}

// Stats returns the Conn's counters and the state of its table.
func (c *Conn) Stats() Stats {
	s := Stats{
		Closes:      c.closes.Load(),
		AlertCloses: c.alertCloses.Load(),
		Forgets:     c.forgets.Load(),
		Echoes:      c.echoes.Load(),
	}
	for i := range c.passed {
		s.Passed += c.passed[i].n.Load()
	}
	for i := range s.Strays {
		for j := range c.drops {
			s.Strays[i] += c.drops[j].n[i].Load()
		}
	}
	ts := c.table.Stats()
	s.Evictions, s.QuietPeers = ts.Evictions, ts.QuietPeers
	return s
}

// Close closes the wrapped conn; blocked reads return an error that matches
// net.ErrClosed.
func (c *Conn) Close() error {
	c.closed.Store(true)
	return c.pc.Close()
}

// LocalAddr returns the wrapped conn's local address.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// SetDeadline sets the wrapped conn's deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.pc.SetDeadline(t) }

// SetReadDeadline sets the wrapped conn's read deadline. Deadlines are
// absolute, so a read that drops strays ends on time all the same.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }

// SetWriteDeadline sets the wrapped conn's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.pc.SetWriteDeadline(t) }

// Drop reports whether ReadFrom would drop a datagram from peer, and counts
// it as ReadFrom does when it would. It is the filter on its own, for
// callers that read the socket themselves (their own batch or io_uring
// loop). With no quiet peer it is one atomic load and a branch.
func (c *Conn) Drop(peer netip.AddrPort, datagram []byte) bool {
	return !c.table.Empty() && c.drop(peer, datagram)
}

// DropBatch is Drop for the first n datagrams of b, for callers that fill
// a Batch themselves: the ones that pass are moved to the front, in order,
// strays to the back, and it returns how many pass. The table's clock is
// read at most once for the whole batch.
func (c *Conn) DropBatch(b *Batch, n int) int {
	b.resetParsed()
	if c.table.Empty() {
		return n
	}
	return c.compactBatch(b, n)
}

// dropAddr decides for a datagram whose source is a net.Addr.
func (c *Conn) dropAddr(addr net.Addr, p []byte) bool {
	ap, ok := addrPort(addr)
	return ok && c.drop(ap, p)
}

// drop is the whole filter: only a quiet peer's datagrams are inspected.
func (c *Conn) drop(ap netip.AddrPort, p []byte) bool {
	if !c.table.Quiet(ap) {
		return false
	}
	var parsed record.Parsed
	reason, drop := c.judge(ap, p, &parsed)
	if drop {
		c.drops[ap.Port()%dropStripes].n[reason].Add(1)
	}
	return drop
}

// judge decides for a datagram from a quiet peer, parsing it into parsed;
// the caller counts a drop (a batch counts its drops once per reason).
func (c *Conn) judge(ap netip.AddrPort, p []byte, parsed *record.Parsed) (record.Reason, bool) {
	r := parsed.Record(p)
	reason := r.Reason()
	switch {
	case r.OpensAssociation():
		ch, first := r.ClientHello(p)
		switch {
		case first && c.table.LateHello(ap, ch.Random):
			// The closed association's own ClientHello, delayed past its
			// close: no client starts a handshake with an old random.
			reason = record.ReasonClientHelloCopy
		case r.FragmentOffset > 0:
			// A later fragment from a client still quiet: its first
			// fragment, which holds the random, opened nothing (a copy, or
			// not yet here; the client sends its flight again).
			reason = record.ReasonClientHelloFragment
		default:
			// RFC 6347 §4.2.8: the client starts afresh; so does the filter.
			if c.table.Forget(ap) {
				c.forgets.Add(1)
			}
			return 0, false
		}
	case r.Class == record.ClassNotDTLS && !c.dropNonDTLS:
		return 0, false
	case c.exempt != nil && c.exempt(ap, p):
		return 0, false
	}
	if c.echo {
		c.echoAlert(ap, len(p))
	}
	if c.onDrop != nil {
		c.onDrop(ap, reason)
	}
	if c.logger != nil && c.logger.Enabled(context.Background(), slog.LevelDebug) {
		c.logger.LogAttrs(context.Background(), slog.LevelDebug, "strayfilter: dropped datagram from quiet peer",
			slog.String("peer", ap.String()), slog.String("reason", reason.String()),
			slog.String("record", r.Class.String()), slog.Int("epoch", int(r.Epoch)), slog.Int("len", len(p)))
	}
	return reason, true
}

// echoAlert sends a quiet peer its closing alert again when its strays
// have earned it (conntrack.Table.Stray): the peer missed the alert, and
// learns at once that the association is over instead of at its timeout.
func (c *Conn) echoAlert(ap netip.AddrPort, size int) {
	var buf [conntrack.MaxAlert]byte
	n, ok := c.table.Stray(ap, size, buf[:])
	if !ok {
		return
	}
	var err error
	if c.udp != nil {
		_, err = c.udp.WriteToUDPAddrPort(buf[:n], ap)
	} else {
		_, err = c.pc.WriteTo(buf[:n], net.UDPAddrFromAddrPort(ap))
	}
	if err == nil {
		c.echoes.Add(1)
	}
}

// batchDrops counts a batch's drops and adds them to the Conn's counters
// once per reason, in the stripe of the batch's first stray.
type batchDrops struct {
	n      [record.NumReasons]uint64
	stripe uint16
	any    bool
}

func (d *batchDrops) count(ap netip.AddrPort, reason record.Reason) {
	if !d.any {
		d.stripe, d.any = ap.Port()%dropStripes, true
	}
	d.n[reason]++
}

func (c *Conn) addDrops(d *batchDrops) {
	if !d.any {
		return
	}
	for reason, n := range d.n {
		if n != 0 {
			c.drops[d.stripe].n[reason].Add(n)
		}
	}
}

// batchClock reads the table's clock at most once per batch: misses never
// need it, and every hit in a batch is judged at the same instant.
type batchClock struct {
	t   *conntrack.Table
	now int64
	ok  bool
}

func (bc *batchClock) quiet(ap netip.AddrPort) bool {
	deadline, found := bc.t.Deadline(ap)
	if !found {
		return false
	}
	if !bc.ok {
		bc.now, bc.ok = bc.t.Now(), true
	}
	return bc.now < deadline
}

// readErr makes sure a read that failed because the Conn was closed matches
// net.ErrClosed, whatever the wrapped conn returned.
func (c *Conn) readErr(err error) error {
	if c.closed.Load() && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %w", net.ErrClosed, err)
	}
	return err
}

// addrPort converts without allocating for *net.UDPAddr (the standard
// library, pion's vnet) and falls back to parsing for other transports.
func addrPort(addr net.Addr) (netip.AddrPort, bool) {
	switch a := addr.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return ap, ap.IsValid()
	case nil:
		return netip.AddrPort{}, false
	case interface{ AddrPort() netip.AddrPort }:
		ap := a.AddrPort()
		return ap, ap.IsValid()
	}
	ap, err := netip.ParseAddrPort(addr.String())
	return ap, err == nil
}
