package strayfilter

// Reason says why a datagram from a quiet peer was dropped.
type Reason uint8

// Drop reasons. Each names what the first record of the dropped datagram was.
const (
	ReasonAlert            Reason = iota // alert (typically the late close_notify)
	ReasonApplicationData                // application data of the old association
	ReasonHandshakeEpoch                 // handshake record at epoch ≥ 1 (a late Finished)
	ReasonNotClientHello                 // epoch-0 handshake that is not a ClientHello
	ReasonChangeCipherSpec               // change_cipher_spec
	ReasonConnectionID                   // tls12_cid record (RFC 9146)
	ReasonCiphertext                     // DTLS 1.3 unified-header record
	ReasonACK                            // DTLS 1.3 ACK
	ReasonOtherContentType               // heartbeat or an unassigned content type
	ReasonMalformed                      // truncated or inconsistent DTLS header
	ReasonNotDTLS                        // not DTLS (only with WithDropNonDTLS)
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonAlert:            "alert",
	ReasonApplicationData:  "application-data",
	ReasonHandshakeEpoch:   "handshake-epoch>0",
	ReasonNotClientHello:   "handshake-not-clienthello",
	ReasonChangeCipherSpec: "change-cipher-spec",
	ReasonConnectionID:     "connection-id",
	ReasonCiphertext:       "dtls13-ciphertext",
	ReasonACK:              "ack",
	ReasonOtherContentType: "other-content-type",
	ReasonMalformed:        "malformed",
	ReasonNotDTLS:          "not-dtls",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown-reason"
}

// ReasonOf maps an inspected record to the reason it would be dropped for.
// It is meaningless for a record that opens an association.
func ReasonOf(r Record) Reason {
	switch r.Class {
	case ClassAlert:
		return ReasonAlert
	case ClassApplicationData:
		return ReasonApplicationData
	case ClassHandshake:
		if r.Epoch != 0 {
			return ReasonHandshakeEpoch
		}
		return ReasonNotClientHello
	case ClassChangeCipherSpec:
		return ReasonChangeCipherSpec
	case ClassConnectionID:
		return ReasonConnectionID
	case ClassCiphertext:
		return ReasonCiphertext
	case ClassACK:
		return ReasonACK
	case ClassOther:
		return ReasonOtherContentType
	case ClassNotDTLS:
		return ReasonNotDTLS
	default:
		return ReasonMalformed
	}
}

// Stats is a snapshot of a Conn's counters.
type Stats struct {
	// Passed counts datagrams returned to the caller.
	Passed uint64
	// Dropped counts datagrams from quiet peers, by Reason.
	Dropped [NumReasons]uint64
	// Closes counts quiet periods this Conn started or restarted, from
	// MarkClosed and from outgoing alerts; AlertCloses is the alert share.
	Closes      uint64
	AlertCloses uint64
	// Forgets counts quiet peers that opened a new association and so were
	// let through and forgotten.
	Forgets uint64
	// Evictions and Peers describe the table, which may be shared: quiet
	// peers evicted early at the cap, and peers quiet now.
	Evictions uint64
	Peers     int
}

// DroppedTotal is the sum of Dropped.
func (s Stats) DroppedTotal() uint64 {
	var n uint64
	for _, d := range s.Dropped {
		n += d
	}
	return n
}
