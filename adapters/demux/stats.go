package demux

import (
	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/strayfilter"
)

// Stats are a listener's counters and current state.
type Stats struct {
	// Filter is the stray filter's view: what it dropped from quiet peers.
	Filter strayfilter.Stats

	Peers int // addresses with an association now
	Conns int // per-peer conns open now
	// Unverified counts handshakes whose client has not proved its address
	// yet; PendingHandshakes those whose client has.
	Unverified        int
	PendingHandshakes int

	Created    uint64 // associations a ClientHello opened
	Verified   uint64 // clients that proved their address (cookie echo)
	Evicted    uint64 // unverified handshakes evicted at WithMaxUnverified
	Unproved   uint64 // unverified handshakes that timed out
	TimedOut   uint64 // verified handshakes that timed out
	Refused    uint64 // cookie echoes dropped at WithMaxPendingHandshakes
	Completed  uint64 // handshakes that completed
	BufferFull uint64 // datagrams dropped because a peer's reader fell behind
	// UnknownPeer counts datagrams that no association could take: from a
	// peer without one that did not open one, or records the peer's
	// handshakes cannot take before the client proved its address.
	UnknownPeer uint64
	// Invalid counts datagrams holding an epoch-0 record that no stack
	// accepts in the association's state (RFC 6347 §4.1.2.7): once
	// established, anything at epoch 0 but a handshake or
	// change_cipher_spec record; during a handshake, the same but alerts.
	// One such forged datagram would otherwise end the association: pion
	// v2 acts on a plaintext close_notify, v3 answers a content type it
	// does not know with a fatal alert.
	Invalid uint64
	// NotAccepting counts ClientHellos from new peers after Close.
	NotAccepting uint64

	Accepted        uint64 // connections returned by Accept
	HandshakeFailed uint64 // handshakes the stack gave up on, or that ended under it
	BacklogOverflow uint64 // established connections closed because the backlog was full

	// Re-handshakes from the same address (RFC 6347 §4.2.8).
	RehandshakeStarted   uint64
	RehandshakeCompleted uint64
	RehandshakeAbandoned uint64

	// Connection IDs (WithConnectionIDs).
	// UnknownCID counts tls12_cid records whose CID no association has:
	// a closed association's late records, forged ones.
	UnknownCID uint64
	// Moved counts associations whose peer moved to a new address because
	// the stack, having authenticated a record from there, sent there;
	// MovedDetached those of them whose new address another established
	// association held, which kept it.
	Moved, MovedDetached uint64
	// CIDCollisions counts CIDs that passed from one association to a
	// newer one the stack gave the same CID (never from a verified one to
	// an unverified one).
	CIDCollisions uint64
}

func (m *mux) snapshot() Stats {
	m.sh.Lock()
	g, c := m.sm.Gauges(), m.sm.Counters()
	s := Stats{Peers: g.Peers, Conns: len(m.all), Unverified: g.Unverified, PendingHandshakes: g.Handshaking}
	m.sh.Unlock()
	s.Filter = m.fc.Stats()
	s.Created = c.Opened
	s.Verified = c.Verified
	s.Evicted = c.Ended[assoc.EndEvicted]
	s.Unproved = c.Ended[assoc.EndUnverifiedTimeout]
	s.TimedOut = c.Ended[assoc.EndHandshakeTimeout]
	s.Refused = c.Refused
	s.Completed = c.Completed
	s.UnknownPeer = c.Dropped[assoc.DropNoAssociation] + c.Dropped[assoc.DropUnproved]
	s.Invalid = c.Dropped[assoc.DropInvalid]
	s.NotAccepting = c.Dropped[assoc.DropNotAccepting]
	s.RehandshakeStarted = c.Rehandshakes
	s.RehandshakeCompleted = c.Replaced
	s.RehandshakeAbandoned = c.RehandshakesAbandoned
	s.UnknownCID = c.Dropped[assoc.DropUnknownCID]
	s.Moved, s.MovedDetached, s.CIDCollisions = c.Moved, c.MovedDetached, c.CIDCollisions
	st := &m.stats
	s.BufferFull = st.bufferFull.Load()
	s.Accepted = st.accepted.Load()
	s.HandshakeFailed = st.handshakeFailed.Load()
	s.BacklogOverflow = st.backlogOverflow.Load()
	return s
}
