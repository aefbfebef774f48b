package relay

import (
	"net/netip"

	"github.com/straydtls/straydtls/internal/assoc"
)

// openLocked opens an upstream socket for the association a (nil for a
// naive one) and starts its pump. Called with the shell's lock held.
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
		r.startPump(u)
	}
	r.log.Debug("association opened", "client", client, "via", conn.LocalAddr())
	return u
}

// startPump starts a goroutine reading u's socket.
func (r *Relay) startPump(u *upstreamConn) {
	r.wg.Add(1)
	r.frz.join()
	go r.pump(u)
}

// shellSide is the Relay as its shell's Handler: a type of its own keeps
// the Handler's methods out of the Relay's API.
type shellSide Relay

// Settled: the relay reads nothing from the machine without the lock but
// its configuration.
func (r *shellSide) Settled(*assoc.Machine[*upstreamConn]) {}

// Ended runs with the shell's lock held.
func (r *shellSide) Ended(e assoc.Ending[*upstreamConn]) bool {
	if e.Quiet {
		// Quiet before unrouted: nothing sees the client unrouted until
		// the lock is released.
		var alert []byte
		if e.Why == assoc.EndServerAlert && r.cfg.closeEcho {
			alert = e.Alert
		}
		r.table.MarkClosedWithAlert(e.Assoc.Peer(), alert)
	}
	u := e.Assoc.Handle
	if u == nil {
		return false
	}
	u.end.Store(uint32(e.Why) + 1)
	return true
}

// Release closes the socket of an association the machine ended; its pump
// sees the close and returns.
func (r *shellSide) Release(u *upstreamConn) { (*Relay)(r).release(u) }

// release closes u's socket, through the pump loop when it reads u.
func (r *Relay) release(u *upstreamConn) {
	if u.rc != nil {
		r.loop.retire(u)
		return
	}
	u.close()
}
