package conntrack

import (
	"hash/maphash"
	"net/netip"
	"time"
)

// Bounds on the closing alerts a Table keeps and sends again.
const (
	// MaxAlert is the longest closing alert kept: a DTLS 1.2 close_notify
	// is 39 bytes with AES-GCM, 77 with AES-CBC and SHA-256.
	MaxAlert = 96
	// MaxEchoes caps how often one quiet peer's alert is sent again: on
	// its 1st, 2nd, 4th, 8th, 16th and 32nd stray.
	MaxEchoes = 6
)

type echoState struct {
	alert   [MaxAlert]byte
	n       uint8  // alert length
	echoes  uint8  // times sent again
	strays  uint32 // strays seen in this quiet period
	bytesIn uint64 // their bytes: never send more than that
}

// Closure is what the local side knows of the association whose close
// starts a peer's quiet period.
type Closure struct {
	// Alert is the closing alert the local side sent the peer, kept for
	// Stray; longer than MaxAlert, or none, it is not kept.
	Alert []byte
	// ClientRandom is the client random of the association's handshake,
	// when HasRandom: a late copy of its ClientHello carries it, and
	// LateHello tells that copy from a new handshake.
	ClientRandom [32]byte
	HasRandom    bool
	// Remaining, when positive and shorter than the table's quiet period,
	// is how much of it is left: a quiet period carried over from another
	// table (QuietPeers), not one that starts now.
	Remaining time.Duration
}

// keep stores what a close knew in entry idx; with mu held.
func (t *Table) keep(st *state, idx uint32, c Closure) {
	st.entries[idx].hello = 0
	if c.HasRandom {
		st.entries[idx].hello = maphash.Comparable(t.helloSeed, c.ClientRandom) | 1
	}
	t.keepAlert(idx, c.Alert)
}

// LateHello reports whether a ClientHello with client random rnd from peer
// is a late copy of the ClientHello of the association whose close put
// peer into its quiet period (a retransmission or a network duplicate
// delayed past the close): a stack would take it for a new connection,
// though no client starts a new handshake with an old random. Any other
// ClientHello is the client starting afresh (RFC 6347 §4.2.8).
func (t *Table) LateHello(peer netip.AddrPort, rnd [32]byte) bool {
	if t.n.Load() == 0 || !peer.IsValid() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	idx, ok := t.quietLocked(peer)
	if !ok {
		return false
	}
	hello := t.st.Load().entries[idx].hello
	return hello != 0 && hello == maphash.Comparable(t.helloSeed, rnd)|1
}

// quietLocked returns the index of peer's entry if its quiet period is
// running; with mu held, so the entry stays put.
func (t *Table) quietLocked(peer netip.AddrPort) (uint32, bool) {
	k := makeKey(peer)
	st := t.st.Load()
	i := st.slot(k, k.hash(t.seed))
	if i < 0 {
		return 0, false
	}
	idx := uint32(st.index[i].Load()) - 1
	if st.entries[idx].deadline.Load() <= t.now() {
		return 0, false
	}
	return idx, true
}

// keepAlert starts entry idx's echo bookkeeping afresh; with mu held.
func (t *Table) keepAlert(idx uint32, alert []byte) {
	if len(alert) == 0 || len(alert) > MaxAlert {
		delete(t.echo, idx)
		return
	}
	if t.echo == nil {
		t.echo = make(map[uint32]*echoState)
	}
	es := t.echo[idx]
	if es == nil {
		es = new(echoState)
		t.echo[idx] = es
	}
	*es = echoState{n: uint8(len(alert))}
	copy(es.alert[:], alert)
}

// Stray tells the table that a datagram of size bytes from peer was
// dropped during its quiet period, and reports whether the closing alert
// kept for peer (MarkClosedWithAlert) is due to be sent to it again,
// copying it into buf, which must hold MaxAlert bytes. It is due on the
// 1st, 2nd, 4th, 8th... stray, at most MaxEchoes times, and only while the
// peer has sent at least as many bytes as the echoes add up to: a forged
// source gets at most the old alert back, never more than it sent, and the
// alert authenticates nothing new. (quic-go answers a closed connection's
// packets so: closed_conn.go.)
func (t *Table) Stray(peer netip.AddrPort, size int, buf []byte) (int, bool) {
	if t.n.Load() == 0 || !peer.IsValid() || size < 0 {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.echo) == 0 {
		return 0, false
	}
	idx, ok := t.quietLocked(peer)
	es := t.echo[idx]
	if !ok || es == nil {
		return 0, false
	}
	es.strays++
	es.bytesIn += uint64(size)
	due := es.strays&(es.strays-1) == 0 && es.echoes < MaxEchoes &&
		es.bytesIn >= uint64(es.echoes+1)*uint64(es.n)
	if !due || len(buf) < int(es.n) {
		return 0, false
	}
	es.echoes++
	t.stats.Echoes++
	return copy(buf, es.alert[:es.n]), true
}
