package record

// Reason is what a datagram that opens no association starts with, in the
// few kinds worth counting apart when such datagrams are dropped as
// strays: a late close_notify, application data, a retransmitted Finished.
type Reason uint8

// Reasons, each naming what the first record of the datagram is.
const (
	ReasonAlert               Reason = iota // alert (typically the late close_notify)
	ReasonApplicationData                   // application data of the old association
	ReasonHandshakeEpoch                    // handshake record at epoch ≥ 1 (a late Finished)
	ReasonNotClientHello                    // epoch-0 handshake that is not a ClientHello
	ReasonChangeCipherSpec                  // change_cipher_spec
	ReasonConnectionID                      // tls12_cid record (RFC 9146)
	ReasonCiphertext                        // DTLS 1.3 unified-header record
	ReasonACK                               // DTLS 1.3 ACK
	ReasonOtherContentType                  // heartbeat or an unassigned content type
	ReasonMalformed                         // truncated or inconsistent DTLS header
	ReasonNotDTLS                           // another protocol's datagram (STUN, RTP)
	ReasonClientHelloCopy                   // a late copy of the closed association's own ClientHello (same client random)
	ReasonClientHelloFragment               // a later fragment of a ClientHello whose first fragment opened nothing
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonAlert:               "alert",
	ReasonApplicationData:     "application-data",
	ReasonHandshakeEpoch:      "handshake-epoch>0",
	ReasonNotClientHello:      "handshake-not-clienthello",
	ReasonChangeCipherSpec:    "change-cipher-spec",
	ReasonConnectionID:        "connection-id",
	ReasonCiphertext:          "dtls13-ciphertext",
	ReasonACK:                 "ack",
	ReasonOtherContentType:    "other-content-type",
	ReasonMalformed:           "malformed",
	ReasonNotDTLS:             "not-dtls",
	ReasonClientHelloCopy:     "clienthello-copy",
	ReasonClientHelloFragment: "clienthello-fragment",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown-reason"
}

// Reason is the Reason for a record that opens no association.
func (r *Record) Reason() Reason {
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
