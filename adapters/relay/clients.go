package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/record"
)

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
		r.frz.join()
		go func() {
			defer r.wg.Done()
			defer r.frz.leave()
			if err := r.readClients(pc); err != nil {
				r.log.Error("reading clients failed; the relay stops", "err", err)
				go r.Close() // Close waits for this reader
			}
		}()
	}
	r.frz.join()
	err := r.readClients(r.pc)
	r.frz.leave()
	r.Close()
	return err
}

// readClients reads one listening socket until it closes.
func (r *Relay) readClients(pc *net.UDPConn) error {
	b, err := newClientReads(pc, clientBatch)
	if err != nil {
		return fmt.Errorf("relay: reading clients: %w", err)
	}
	var routes [clientBatch]assoc.Route[*upstreamConn]
	var w upstreamWriter
	for {
		n, err := b.read()
		if err != nil {
			if r.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// Freeze set it: wait for Thaw, or for Close after a
				// hand-over.
				if !r.frz.park() {
					return nil
				}
				continue
			}
			if transient(err) {
				// ICMP errors for an earlier WriteTo surface on Linux as a
				// read error on an unconnected socket; they end nothing.
				continue
			}
			return fmt.Errorf("relay: reading clients: %w", err)
		}
		r.handleClients(&w, b, n, routes[:n])
	}
}

func transient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, os.ErrDeadlineExceeded)
}

func (r *Relay) now() int64 { return r.sh.Now() }

// handleClients forwards a batch of client datagrams where the machine
// routes them, or drops them: the machine decides for the whole batch under
// one lock, then the datagrams go out in order. It runs on the goroutine
// reading one listening socket; with WithReaders, several run at once,
// each for the clients the kernel hashes to its socket, with its own w.
func (r *Relay) handleClients(w *upstreamWriter, b *clientReads, n int, routes []assoc.Route[*upstreamConn]) {
	r.counters.fromClients.Add(uint64(n))
	if !r.cfg.filter {
		for i := range n {
			r.handleNaive(w, b.datagram(i), b.addrs[i])
		}
		return
	}
	r.sh.Lock()
	if r.closed {
		r.sh.Unlock()
		return
	}
	now := r.now()
	for i := range n {
		rt := r.sm.ClientParsed(now, b.addrs[i], b.datagram(i), &b.parsed[i])
		if rt.Adoptable && !r.table.Quiet(b.addrs[i]) {
			// Rule 12; a quiet client's CID record is a stray of the
			// association the server closed, and stays dropped.
			rt = r.sm.Adopt(now, b.addrs[i])
		}
		if rt.Open != nil && r.openLocked(rt.Open.Peer(), rt.Open) == nil {
			r.sm.Abort(rt.Open)
		}
		routes[i] = rt
	}
	ended := r.sh.UnlockHeld()
	for i := range n {
		d, rt := b.datagram(i), &routes[i]
		if rt.N == 0 {
			r.drop(b.addrs[i], d, &b.parsed[i], rt.Drop)
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
			r.drop(b.addrs[i], d, &b.parsed[i], assoc.DropNoAssociation)
		}
	}
	// Sockets of what the batch ended close after the forwards: a
	// datagram routed to an association before a later one ended it goes
	// out, as it did when each datagram was handled alone.
	r.sh.Release(ended)
}

// handleNaive is the relay without filtering (WithFiltering(false)): a
// plain per-client NAT, to show what the filtering prevents.
func (r *Relay) handleNaive(w *upstreamWriter, d []byte, from netip.AddrPort) {
	r.sh.Lock()
	u := r.naive[from]
	if u == nil && !r.closed {
		if u = r.openLocked(from, nil); u != nil {
			r.naive[from] = u
			r.counters.naiveOpened.Add(1)
		}
	}
	r.sh.Unlock()
	if u != nil {
		r.forward(w, u, d)
	}
}

// drop counts a client datagram that no association takes.
func (r *Relay) drop(from netip.AddrPort, d []byte, parsed *record.Parsed, why assoc.Drop) {
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
		r.dropQuiet[parsed.Record(d).Reason()].Add(1)
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
