package assoc

// MaxPerPeer bounds the handshakes one addr:port can have under way at
// once (rule 2): enough for a rebooted client beside a few forged
// ClientHellos, small enough that a peer costs a fixed amount.
const MaxPerPeer = 4

// State is where an association is in its life.
type State uint8

// States of an association.
const (
	Unverified  State = iota + 1 // opened by a ClientHello; its source is not proved
	Handshaking                  // the client proved its address; the handshake runs
	Established                  // the handshake completed
	Closing                      // the client sent a closing alert (rule 6)
	Ended
)

var stateNames = [...]string{"invalid", "unverified", "handshaking", "established", "closing", "ended"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}

// EndReason says why an association ended.
type EndReason uint8

// Ending is an association the Machine ended, as Ended reports it.
type Ending[T any] struct {
	Assoc *Assoc[T]
	Why   EndReason
	// Quiet says the association's client enters its quiet period now
	// (rule 3).
	Quiet bool
	// Alert is, for EndServerAlert, the server's datagram that carried the
	// closing alert: the slice Server was given, so it holds only until
	// the shell reuses that buffer.
	Alert []byte
}

// Reasons an association ends.
const (
	EndEvicted           EndReason = iota // an unverified association made room for a newer one
	EndUnverifiedTimeout                  // its client never proved its address
	EndHandshakeTimeout                   // its handshake did not complete in time
	EndIdle                               // nothing crossed for the idle timeout
	EndLinger                             // closed by the client, and nothing crossed during the linger
	EndReclaimed                          // closing, and its slot was needed
	EndServerAlert                        // the server sent a closing alert
	EndRetired                            // a newer association of the same client completed
	EndClosed                             // the shell's I/O ended: the stack closed it, or shutdown
	EndAborted                            // the shell could not set it up
	EndRefused                            // completed unverified, and the association cap was full
	EndClientAlert                        // the client gave up its handshake with a fatal alert
	NumEndReasons
)

var endNames = [NumEndReasons]string{
	"evicted", "unverified-timeout", "handshake-timeout", "idle", "linger",
	"reclaimed", "server-alert", "retired", "closed", "aborted", "refused",
	"client-alert",
}

func (e EndReason) String() string {
	if e < NumEndReasons {
		return endNames[e]
	}
	return "invalid"
}

// Drop says why a client datagram went to no association.
type Drop uint8

// Reasons a client datagram is dropped.
const (
	DropNone          Drop = iota
	DropNoAssociation      // not a ClientHello, from a peer without an association
	DropNotAccepting       // a ClientHello that would open one after StopAccepting
	DropRefused            // a cookie echo the caps could not admit, or a ClientHello from a peer whose every handshake is verified
	DropInvalid            // an epoch-0 record no stack accepts in the association's state (rule 5)
	DropUnproved           // a record the peer's unanswered handshakes cannot take yet (rule 4)
	DropUnknownCID         // a tls12_cid record whose CID no association has (rule 9)
	NumDrops
)

var dropNames = [NumDrops]string{"none", "no-association", "not-accepting", "refused", "invalid", "unproved", "unknown-cid"}

func (d Drop) String() string {
	if d < NumDrops {
		return dropNames[d]
	}
	return "invalid"
}

// Route is where one client datagram goes.
type Route[T any] struct {
	// To are the associations to deliver the datagram to, in order.
	To [MaxPerPeer + 1]*Assoc[T]
	N  int
	// Open is an association this datagram opened (it is also in To):
	// the shell sets up its I/O and Handle before delivering.
	Open *Assoc[T]
	// Drop says why the datagram went nowhere, when N is 0.
	Drop Drop
	// Adoptable says the datagram, dropped as from no association, may
	// open one (rule 12): the shell calls Adopt unless its client is
	// quiet. The drop is not counted.
	Adoptable bool
	// Ended is true when the datagram ended the association it goes to (a
	// client's fatal alert, with EndOnClientAlert): deliver it, then
	// release.
	Ended bool
}

func (r *Route[T]) add(a *Assoc[T]) { r.To[r.N] = a; r.N++ }

// Counters count what a Machine decided since it was made.
type Counters struct {
	Opened       uint64 // associations ClientHellos opened
	Adopted      uint64 // of those, opened by a CID record instead (rule 12)
	Rehandshakes uint64 // of those, opened beside an established association of the peer
	Verified     uint64 // clients that proved their address
	Refused      uint64 // cookie echoes dropped at a cap, and ClientHellos from a peer with MaxPerPeer verified handshakes
	Completed    uint64 // handshakes that completed
	Replaced     uint64 // established associations a newer one of the same client retired
	// RehandshakesAbandoned counts re-handshakes that ended before completing.
	RehandshakesAbandoned uint64
	// CookiesWithheld counts cookie requests not forwarded (rule 8).
	CookiesWithheld uint64
	// CIDsBound counts CIDs routed to the association whose server named
	// them; CIDCollisions those that another association had until then
	// (the newer takes the route, unless it is unverified and the other is
	// not).
	CIDsBound, CIDCollisions uint64
	// Moved counts peer address updates (rule 9); MovedDetached those
	// whose new address had another association, which keeps it.
	Moved, MovedDetached uint64
	Ended                [NumEndReasons]uint64
	Dropped              [NumDrops]uint64
}

// Gauges are a Machine's associations now, by state.
type Gauges struct {
	Peers, Unverified, Handshaking, Established, Closing int
}

// Verdict is what to do with a datagram the server (or the local stack)
// sent on an association.
type Verdict struct {
	// Forward is false when the datagram must not reach the client: its
	// association was retired, and the client's newer one must not see it.
	Forward bool
	// Ended is true when the datagram ended the association (a server's
	// closing alert, with EndOnServerAlert): forward it, then release.
	Ended bool
}
