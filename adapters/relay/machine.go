package relay

import (
	"net/netip"
	"time"

	"github.com/straydtls/straydtls/internal/assoc"
)

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
