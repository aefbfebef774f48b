package conntrack

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// QuietPeer is one peer in its quiet period, as another Table takes it
// over (a relay handing its state to its successor): Close with its
// Closure, Remaining included, restores it.
type QuietPeer struct {
	Peer    netip.AddrPort
	Closure Closure
}

// QuietPeers returns the peers quiet now, oldest close first, each with
// the rest of its quiet period and its kept alert. A link-local peer's
// zone is kept only as a hash, so such peers are left out; so is the
// client random, kept only as a hash under this table's seed: a late copy
// of the closed handshake's ClientHello ends the quiet period of a peer
// carried over, as a new handshake would.
func (t *Table) QuietPeers() []QuietPeer {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	st := t.st.Load()
	var out []QuietPeer
	for idx := t.head; idx != none; idx = st.entries[idx].next {
		e := &st.entries[idx]
		left := e.deadline.Load() - now
		meta := e.meta.Load()
		if left <= 0 || meta>>32 != 0 {
			continue
		}
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], e.hi.Load())
		binary.BigEndian.PutUint64(b[8:], e.lo.Load())
		q := QuietPeer{Peer: netip.AddrPortFrom(netip.AddrFrom16(b).Unmap(), uint16(meta))}
		q.Closure.Remaining = time.Duration(left)
		if es := t.echo[idx]; es != nil {
			q.Closure.Alert = append([]byte(nil), es.alert[:es.n]...)
		}
		out = append(out, q)
	}
	return out
}
