package demux

import "github.com/straydtls/straydtls/strayfilter"

// Stats are a listener's counters and current state.
type Stats struct {
	// Filter is the stray filter's view: what it dropped from quiet peers.
	Filter strayfilter.Stats

	Peers             int // addresses with an association now
	Conns             int // per-peer conns open now (live and pending)
	PendingHandshakes int // handshakes under way now

	Created     uint64 // associations a ClientHello created
	Refused     uint64 // ClientHellos refused: too many pending handshakes, or backlog full
	UnknownPeer uint64 // datagrams from a peer without association that did not open one
	// NotAccepting counts datagrams from unknown peers after Close.
	NotAccepting uint64
	BufferFull   uint64 // datagrams dropped because a peer's reader fell behind

	Accepted        uint64 // connections returned by Accept
	HandshakeFailed uint64 // handshakes that failed or timed out
	BacklogOverflow uint64 // established connections closed because the backlog was full

	// Re-handshakes from the same address (RFC 6347 §4.2.8).
	RehandshakeStarted   uint64
	RehandshakeCompleted uint64
	RehandshakeAbandoned uint64
}

func (m *mux) snapshot() Stats {
	m.mu.Lock()
	s := Stats{Peers: len(m.peers), Conns: m.conns, PendingHandshakes: m.pending}
	m.mu.Unlock()
	s.Filter = m.fc.Stats()
	c := &m.stats
	s.Created = c.created.Load()
	s.Refused = c.refused.Load()
	s.UnknownPeer = c.unknownPeer.Load()
	s.NotAccepting = c.notAccepting.Load()
	s.BufferFull = c.bufferFull.Load()
	s.Accepted = c.accepted.Load()
	s.HandshakeFailed = c.handshakeFailed.Load()
	s.BacklogOverflow = c.backlogOverflow.Load()
	s.RehandshakeStarted = c.rehandshakeStarted.Load()
	s.RehandshakeCompleted = c.rehandshakeCompleted.Load()
	s.RehandshakeAbandoned = c.rehandshakeAbandoned.Load()
	return s
}
