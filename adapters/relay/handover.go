package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/record"
)

// Handover is what a relay passes to its successor (the next version of
// its process) so that no client notices the restart: its listening
// sockets, the upstream socket of every association it carries over, and
// the state that goes with them, all of which cross a process boundary
// (exec's inherited descriptors, systemd's file descriptor store). What is
// queued in the sockets stays queued for the successor to read.
type Handover struct {
	Listeners []*os.File
	// Upstreams are the associations' upstream sockets, in the order
	// State lists the associations.
	Upstreams []*os.File
	State     []byte
}

// handoverVersion is the layout of Handover.State; a successor that reads
// another starts clean and says so.
const handoverVersion = 1

type handoverState struct {
	Version  int
	Upstream netip.AddrPort
	Assocs   []carriedAssoc
	Quiet    []conntrack.QuietPeer
	Machine  assoc.Counters
	Relay    map[string]uint64
	Strays   [record.NumReasons]uint64
}

type carriedAssoc struct {
	assoc.Saved
	Opened             time.Duration // age
	ToServer, ToClient uint64
}

// ErrFrozen is returned by Freeze on a relay that is frozen already (or
// closed).
var ErrFrozen = errors.New("relay: frozen for a hand-over")

// freezeTimeout bounds how long Freeze waits for the readers to park.
const freezeTimeout = 5 * time.Second

// Freeze stops the relay between two reads, with every socket open and
// what is queued in them unread, and returns what a successor needs to
// carry on (Adopt). The relay stays frozen until Thaw (the successor
// failed: this relay serves on) or Close (the successor took over).
// Handshakes not yet proved (unverified) are not carried over: the
// client's cookie echo opens a new one.
func (r *Relay) Freeze() (*Handover, error) {
	if !r.frz.freeze() {
		return nil, ErrFrozen
	}
	past := time.Unix(1, 0)
	listeners := append([]*net.UDPConn{r.pc}, r.extra...)
	for _, pc := range listeners {
		pc.SetReadDeadline(past)
	}
	// Readers first: once they are parked, nothing opens an association.
	// (A Serve that starts now parks its readers at their first read.)
	readers := 0
	if r.served.Load() {
		readers = len(listeners)
	}
	if !r.frz.waitParkedReaders(readers, freezeTimeout) {
		r.Thaw()
		return nil, errors.New("relay: Freeze: the client readers did not stop")
	}
	r.setUpstreamDeadlines(past)
	if !r.frz.waitParked(freezeTimeout) {
		r.Thaw()
		return nil, errors.New("relay: Freeze: the upstream readers did not stop")
	}

	r.sh.Lock()
	defer r.sh.Unlock()
	now := r.now()
	st := handoverState{
		Version:  handoverVersion,
		Upstream: r.Upstream(),
		Quiet:    r.table.QuietPeers(),
		Machine:  r.sm.Counters(),
		Relay:    r.counters.save(),
	}
	for i := range st.Strays {
		st.Strays[i] = r.dropQuiet[i].Load()
	}
	h := &Handover{}
	fail := func(err error) (*Handover, error) {
		h.Close()
		r.sh.Unlock()
		r.Thaw()
		r.sh.Lock() // for the deferred Unlock
		return nil, err
	}
	for _, pc := range listeners {
		f, err := pc.File()
		if err != nil {
			return fail(fmt.Errorf("relay: Freeze: listening socket: %w", err))
		}
		h.Listeners = append(h.Listeners, f)
	}
	for _, c := range r.sm.Save(now) {
		u := c.Assoc.Handle
		uc, ok := u.conn.(*net.UDPConn)
		if !ok {
			continue // not a socket (tests): it cannot cross
		}
		f, err := uc.File()
		if err != nil {
			return fail(fmt.Errorf("relay: Freeze: upstream socket of %v: %w", u.client, err))
		}
		h.Upstreams = append(h.Upstreams, f)
		st.Assocs = append(st.Assocs, carriedAssoc{Saved: c.Saved, Opened: time.Duration(now - u.opened),
			ToServer: u.toServer.Load(), ToClient: u.toClient.Load()})
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fail(fmt.Errorf("relay: Freeze: %w", err))
	}
	h.State = b
	r.log.Info("frozen for a hand-over", "associations", len(st.Assocs), "quiet_clients", len(st.Quiet))
	return h, nil
}

// Thaw lets a frozen relay serve on, as if it never stopped: its
// successor failed.
func (r *Relay) Thaw() {
	for _, pc := range append([]*net.UDPConn{r.pc}, r.extra...) {
		pc.SetReadDeadline(time.Time{})
	}
	r.setUpstreamDeadlines(time.Time{})
	r.frz.thaw()
}

// setUpstreamDeadlines puts t on every upstream socket a goroutine reads
// and on the pump loop's wait (Freeze: a past t parks them).
func (r *Relay) setUpstreamDeadlines(t time.Time) {
	r.sh.Lock()
	var pumped []net.Conn
	for u := range r.all {
		if u.rc == nil {
			pumped = append(pumped, u.conn)
		}
	}
	loop := r.loop
	r.sh.Unlock()
	for _, c := range pumped {
		c.SetReadDeadline(t)
	}
	if loop != nil {
		loop.setReadDeadline(t)
	}
}

// Close closes the Handover's descriptors: the sender's copies once the
// successor has its own, or what a failed hand-over leaves.
func (h *Handover) Close() {
	for _, f := range h.Listeners {
		f.Close()
	}
	for _, f := range h.Upstreams {
		f.Close()
	}
}

// Adopt returns a Relay that carries on from h, which a relay's Freeze
// made in another process: it reads clients on h's listening sockets and
// the server on its associations' upstream sockets, with their states, the
// quiet clients and the counters. New associations go to upstream. A
// state it cannot read (another version's) is logged and left: the relay
// starts clean on the listening sockets, and the associations' sockets
// are closed. Adopt takes h's descriptors; Serve starts it.
func Adopt(h *Handover, upstream netip.AddrPort, opts ...Option) (*Relay, error) {
	defer h.Close() // the conns made below hold their own descriptors
	if len(h.Listeners) == 0 {
		return nil, fmt.Errorf("relay: Adopt: no listening socket: %w", ErrInvalidOption)
	}
	cfg, err := configure(opts)
	if err != nil {
		return nil, err
	}
	var pcs []*net.UDPConn
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
	}
	for _, f := range h.Listeners {
		c, err := net.FilePacketConn(f)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("relay: Adopt: listening socket %s: %w", f.Name(), err)
		}
		pc, ok := c.(*net.UDPConn)
		if !ok {
			c.Close()
			closeAll()
			return nil, fmt.Errorf("relay: Adopt: listening socket %s is not UDP: %w", f.Name(), ErrInvalidOption)
		}
		pcs = append(pcs, pc)
	}
	cfg.readers = len(pcs)
	r, err := newRelay(pcs[0], pcs[1:], upstream, cfg)
	if err != nil {
		closeAll()
		return nil, err
	}
	var st handoverState
	if err := json.Unmarshal(h.State, &st); err != nil || st.Version != handoverVersion || len(st.Assocs) != len(h.Upstreams) {
		r.log.Warn("the state handed over is not one this version reads; starting clean on the listening sockets",
			"version", st.Version, "want_version", handoverVersion, "associations_dropped", len(h.Upstreams), "err", err)
		return r, nil
	}
	r.restore(&st, h.Upstreams)
	return r, nil
}

// restore carries the associations, quiet clients and counters of st over.
func (r *Relay) restore(st *handoverState, files []*os.File) {
	r.sh.Lock()
	defer r.sh.Unlock()
	now := r.now()
	for _, q := range st.Quiet {
		r.table.Close(q.Peer, q.Closure)
	}
	carried, failed := 0, 0
	for i, ca := range st.Assocs {
		conn, err := net.FileConn(files[i])
		if err != nil {
			failed++
			continue
		}
		u := &upstreamConn{client: ca.Peer, conn: conn, opened: now - int64(ca.Opened)}
		u.toServer.Store(ca.ToServer)
		u.toClient.Store(ca.ToClient)
		a, err := r.sm.Restore(now, ca.Saved, u)
		if err != nil {
			conn.Close()
			failed++
			continue
		}
		u.a = a
		r.all[u] = struct{}{}
		if !r.loopAdd(u) {
			r.startPump(u)
		}
		carried++
	}
	r.sm.SetCounters(st.Machine)
	r.counters.restore(st.Relay)
	for i := range st.Strays {
		r.dropQuiet[i].Store(st.Strays[i])
	}
	r.log.Info("carried on from a hand-over", "associations", carried, "failed", failed, "quiet_clients", len(st.Quiet))
}
