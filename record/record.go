package record

import "encoding/binary"

// Content types that can start a DTLS record (RFC 6347 §4.1, RFC 6520,
// RFC 9146, RFC 9147 §4).
const (
	ContentTypeChangeCipherSpec = 20
	ContentTypeAlert            = 21
	ContentTypeHandshake        = 22
	ContentTypeApplicationData  = 23
	ContentTypeHeartbeat        = 24
	ContentTypeConnectionID     = 25 // tls12_cid, RFC 9146
	ContentTypeACK              = 26 // RFC 9147 §7
)

const (
	recordHeaderLen    = 13
	handshakeHeaderLen = 12

	// RFC 9443 gives DTLS the first-byte range 20..63 on a shared port.
	firstDTLSByte = 20
	lastDTLSByte  = 63

	// RFC 9147 §4: a first byte 0b001CSLEE is a DTLSCiphertext unified header.
	unifiedMask  = 0xe0
	unifiedFixed = 0x20
	unifiedC     = 0x10
	unifiedS     = 0x08
	unifiedL     = 0x04
	unifiedEpoch = 0x03

	// A DTLS 1.3 ciphertext holds at least a 16-byte AEAD tag, and at most
	// 2^14 bytes of plaintext with 256 of expansion (RFC 9147 §4.2.3).
	minCiphertext = 16
	maxCiphertext = 1<<14 + 256
	// An ACK holds a 2-byte length and 16-byte record numbers (RFC 9147 §7).
	ackNumberLen = 16

	alertLevelFatal       = 2
	alertCloseNotify      = 0
	dtlsVersionMajor byte = 0xfe
)

// Class says what the first record of a datagram is.
type Class uint8

// Classes returned by [Inspect]. The zero value is ClassNotDTLS.
const (
	// ClassNotDTLS: the first byte is outside 20..63 (RFC 9443), so the
	// datagram belongs to another protocol sharing the port (STUN, RTP, ...).
	ClassNotDTLS Class = iota
	// ClassMalformed: the first byte claims DTLS but the record header is
	// truncated, its version is not a DTLS version, its length runs past the
	// datagram, or an epoch-0 handshake header is inconsistent.
	ClassMalformed
	ClassChangeCipherSpec
	ClassAlert
	ClassHandshake
	ClassApplicationData
	// ClassConnectionID is a tls12_cid record (RFC 9146). Its CID length is
	// not on the wire, so only type, version, epoch and sequence are read.
	ClassConnectionID
	ClassACK
	// ClassCiphertext is a DTLS 1.3 record with the unified header
	// (RFC 9147 §4): always encrypted, never a ClientHello.
	ClassCiphertext
	// ClassOther is a DTLSPlaintext header with a content type this package
	// does not name (heartbeat, 27..31).
	ClassOther
	numClasses
)

var classNames = [numClasses]string{
	ClassNotDTLS:          "not-dtls",
	ClassMalformed:        "malformed",
	ClassChangeCipherSpec: "change-cipher-spec",
	ClassAlert:            "alert",
	ClassHandshake:        "handshake",
	ClassApplicationData:  "application-data",
	ClassConnectionID:     "connection-id",
	ClassACK:              "ack",
	ClassCiphertext:       "dtls13-ciphertext",
	ClassOther:            "other-content-type",
}

func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return "unknown-class"
}

// Record describes the first record of a datagram. It is a plain value:
// inspecting a datagram allocates nothing and keeps no reference to it.
type Record struct {
	Class Class
	// Type is the datagram's first byte: the content type of a DTLSPlaintext
	// or tls12_cid record, or the flags byte of a unified header.
	Type uint8
	// Version is the record version of DTLSPlaintext and tls12_cid records
	// (0xfeff DTLS 1.0, 0xfefd DTLS 1.2; DTLS 1.3 ClientHellos may carry either).
	Version uint16
	// Epoch is the full epoch of DTLSPlaintext and tls12_cid records and the
	// low two bits of the epoch for a unified header.
	Epoch uint16
	// Seq is the 48-bit sequence number of DTLSPlaintext and tls12_cid
	// records; zero for a unified header, whose sequence number is encrypted.
	Seq uint64
	// Length is the record's length field (DTLSPlaintext, or a unified header
	// that carries one).
	Length uint16

	// The handshake header, read only for epoch-0 handshake records, the
	// only ones sent in the clear. HasHandshakeHeader says whether it was read.
	HasHandshakeHeader bool
	MsgType            uint8
	MessageLength      uint32
	MessageSeq         uint16
	FragmentOffset     uint32
	FragmentLength     uint32

	// What the hello messages' fragments say, read once here so no one
	// reads the datagram again: see ClientHello, Cookie, AsksForCookie,
	// ServerConnectionID and Scan.
	hello     helloKind
	ext       uint8  // ext* bits: what the extensions said
	cidLen    uint8  // of a ServerHello's connection_id
	cookieAt  uint16 // datagram offset of the cookie
	cookieLen uint16
	cidAt     uint16 // datagram offset of the connection_id's CID
	rest      Scan   // where the walk through the extensions stopped
}

// OpensAssociation reports whether the datagram starts a new handshake: its
// first record is an epoch-0 handshake record carrying a ClientHello
// fragment. Non-first fragments count too, because a DTLS 1.3 ClientHello
// with large key shares spans several datagrams, and they may be reordered.
func (r *Record) OpensAssociation() bool {
	return r.Class == ClassHandshake && r.Epoch == 0 && r.HasHandshakeHeader &&
		r.MsgType == HandshakeTypeClientHello
}

// FatalAlert reports whether the datagram, which r was parsed from, starts
// with a plaintext (epoch-0) fatal alert: its sender giving up a handshake.
// A fatal alert ends the connection on both sides (RFC 5246 §7.2.2), and
// every stack abandons a handshake on receiving one, authenticated or not.
func (r *Record) FatalAlert(datagram []byte) bool {
	// Parse classed the record an alert only if it fits in the datagram.
	return r.Class == ClassAlert && r.Epoch == 0 && r.Length >= 2 && datagram[recordHeaderLen] == alertLevelFatal
}

// Protected reports whether the record claims to be sent under keys a
// handshake agreed on: a tls12_cid record, a DTLS 1.3 unified header, or
// any other record whose header names an epoch other than 0. A datagram of
// another protocol is neither protected nor clear text (see ClearText).
func (r *Record) Protected() bool {
	switch r.Class {
	case ClassNotDTLS:
		return false
	case ClassConnectionID, ClassCiphertext:
		return true
	}
	return r.Epoch != 0
}

// ClearText reports whether the record is DTLS sent before keys were agreed
// (epoch 0, malformed ones included): what a handshake sends first, and
// what a stack can take as a new handshake's. While a client re-handshakes
// from a live address, such records belong to the new handshake alone.
func (r *Record) ClearText() bool {
	return r.Class != ClassNotDTLS && !r.Protected()
}

// Inspect classifies the first record of a datagram. It never panics, never
// allocates and looks at no byte past the first record's header (plus the
// handshake header of an epoch-0 handshake record); later records in the
// datagram are the DTLS stack's business.
func Inspect(datagram []byte) (r Record) {
	r.Parse(datagram)
	return r
}

// Parse is Inspect into r, which it overwrites: for the per-datagram paths
// that keep the Record in a variable of their own. Copying a Record that
// was just written field by field (Inspect's result) stalls the CPU on
// store forwarding; Parse into a local is about twice as fast.
func (r *Record) Parse(datagram []byte) {
	countParse()
	*r = Record{}
	if len(datagram) == 0 {
		// An empty datagram carries no record; a DTLS stack discards it.
		r.Class = ClassMalformed
		return
	}
	b0 := datagram[0]
	r.Type = b0
	if b0 < firstDTLSByte || b0 > lastDTLSByte {
		r.Class = ClassNotDTLS
		return
	}
	if b0&unifiedMask == unifiedFixed {
		inspectUnified(r, datagram)
		return
	}
	if len(datagram) < recordHeaderLen {
		r.Class = ClassMalformed
		return
	}
	h := (*[recordHeaderLen]byte)(datagram) // one bounds check for the header
	r.Version = uint16(h[1])<<8 | uint16(h[2])
	r.Epoch = uint16(h[3])<<8 | uint16(h[4])
	r.Seq = uint64(h[5])<<40 | uint64(h[6])<<32 | uint64(h[7])<<24 | uint64(h[8])<<16 | uint64(h[9])<<8 | uint64(h[10])
	if h[1] != dtlsVersionMajor {
		r.Class = ClassMalformed
		return
	}
	if b0 == ContentTypeConnectionID {
		// The length field sits after a CID whose length only the receiver
		// knows; an epoch-0 tls12_cid record cannot exist (RFC 9146 §4).
		r.Class = ClassConnectionID
		if r.Epoch == 0 {
			r.Class = ClassMalformed
		}
		return
	}
	r.Length = uint16(h[11])<<8 | uint16(h[12])
	if recordHeaderLen+int(r.Length) > len(datagram) {
		r.Class = ClassMalformed
		return
	}
	switch b0 {
	case ContentTypeChangeCipherSpec:
		r.Class = ClassChangeCipherSpec
	case ContentTypeAlert:
		r.Class = ClassAlert
	case ContentTypeHandshake:
		r.Class = ClassHandshake
		if r.Epoch == 0 {
			if inspectHandshake(r, datagram[recordHeaderLen:recordHeaderLen+int(r.Length)]) {
				inspectHello(r, datagram)
			} else {
				r.Class = ClassMalformed
			}
		}
	case ContentTypeApplicationData:
		r.Class = ClassApplicationData
	case ContentTypeACK:
		r.Class = ClassACK
		if r.Epoch == 0 && !wellFormedACK(datagram[recordHeaderLen:recordHeaderLen+int(r.Length)]) {
			// In the clear it is read as it stands (encrypted ones are
			// opaque): a list of record numbers no stack can read is none.
			r.Class = ClassMalformed
		}
	default:
		r.Class = ClassOther
	}
}

// inspectHandshake reads the handshake header of an epoch-0 record body and
// reports whether it is consistent: every DTLS handshake fragment carries the
// full 12-byte header and its fragment lies inside both record and message.
func inspectHandshake(r *Record, body []byte) bool {
	if len(body) < handshakeHeaderLen {
		return false
	}
	r.HasHandshakeHeader = true
	r.MsgType = body[0]
	r.MessageLength = uint24(body[1:4])
	r.MessageSeq = binary.BigEndian.Uint16(body[4:6])
	r.FragmentOffset = uint24(body[6:9])
	r.FragmentLength = uint24(body[9:12])
	if int(r.FragmentLength) > len(body)-handshakeHeaderLen {
		return false
	}
	return uint64(r.FragmentOffset)+uint64(r.FragmentLength) <= uint64(r.MessageLength)
}

func inspectUnified(r *Record, datagram []byte) {
	b0 := datagram[0]
	r.Class, r.Epoch = ClassCiphertext, uint16(b0&unifiedEpoch)
	header := unifiedHeaderLen(b0, 0)
	hasLength := b0&unifiedL != 0
	if len(datagram) < header {
		r.Class = ClassMalformed
		return
	}
	if b0&unifiedC != 0 {
		// With a CID the length field sits behind bytes of unknown length.
		return
	}
	payload := len(datagram) - header // without L the record runs to the end
	if hasLength {
		r.Length = binary.BigEndian.Uint16(datagram[header-2 : header])
		payload = int(r.Length)
	}
	// An AEAD tag at least, and no more than a record's plaintext and its
	// expansion (RFC 9147 §4.2.3): anything else no stack decrypts.
	if header+payload > len(datagram) || payload < minCiphertext || payload > maxCiphertext {
		r.Class = ClassMalformed
	}
}

// unifiedHeaderLen is the length of a DTLS 1.3 unified header whose first
// byte is b0 and whose CID, if its C bit is set, is cidLen bytes (RFC 9147
// §4): the flags, the CID, a sequence number of one or two bytes (S) and
// a length field (L).
func unifiedHeaderLen(b0 byte, cidLen int) int {
	n := 1 + 1
	if b0&unifiedC != 0 {
		n += cidLen
	}
	if b0&unifiedS != 0 {
		n++
	}
	if b0&unifiedL != 0 {
		n += 2
	}
	return n
}

// wellFormedACK reports whether an ACK's body is a record_numbers list:
// a 2-byte length, as long as the rest, in whole 16-byte record numbers.
func wellFormedACK(body []byte) bool {
	return len(body) >= 2 && int(binary.BigEndian.Uint16(body)) == len(body)-2 && (len(body)-2)%ackNumberLen == 0
}

func uint24(b []byte) uint32 {
	_ = b[2]
	return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
}

// CarriesClosingAlert reports whether a datagram our side is about to send
// ends the association: it holds an alert record at epoch ≥ 1 (encrypted in
// DTLS 1.2, so every such alert is taken as closing), or a plaintext epoch-0
// alert that is fatal or a close_notify. Unlike [Inspect] it walks every
// record, because stacks pack an alert behind other records of a flight.
// Alerts inside tls12_cid or DTLS 1.3 ciphertext records are invisible; the
// walk stops at the first record whose length it cannot know.
func CarriesClosingAlert(datagram []byte) bool {
	found := false
	walk(datagram, CIDUnknown, func(typ byte, epoch uint16, body []byte) bool {
		if typ != ContentTypeAlert {
			return true
		}
		if epoch != 0 || len(body) >= 2 && (body[0] == alertLevelFatal || body[1] == alertCloseNotify) {
			found = true
		}
		return !found
	})
	return found
}

// CarriesApplicationTraffic reports whether any record in the datagram is
// protected under application traffic keys, which a server uses only once
// its side of the handshake is done: in DTLS 1.2 a record at epoch ≥ 1
// (tls12_cid included; its Finished, sent once it checked the client's,
// is the first); in DTLS 1.3 a record at epoch 3 or later, that is a
// unified header whose low epoch bits are not 2 (epoch 2 carries the
// server's handshake flight, before the client's Finished). The walk
// stops at the first record whose length it cannot know: a unified header
// with a CID, whose length only the receiver knows.
func CarriesApplicationTraffic(datagram []byte) bool {
	found := false
	rest := walk(datagram, CIDUnknown, func(_ byte, epoch uint16, _ []byte) bool {
		found = epoch != 0
		return !found
	})
	for !found && len(rest) > 0 {
		b0 := rest[0]
		if b0 == ContentTypeConnectionID {
			r := Inspect(rest) // an epoch-0 tls12_cid record is malformed
			return r.Class == ClassConnectionID
		}
		if b0&unifiedMask != unifiedFixed {
			return false
		}
		n := unifiedRecordLen(rest)
		if n <= 0 {
			return false
		}
		found = b0&unifiedEpoch != 2
		rest = rest[n:]
	}
	return found
}

// unifiedRecordLen is the length of the DTLS 1.3 unified-header record a
// datagram starts with, or 0 when it cannot be known (a CID) or runs past
// the datagram.
func unifiedRecordLen(d []byte) int {
	b0 := d[0]
	if b0&unifiedC != 0 {
		return 0
	}
	if b0&unifiedL == 0 {
		return len(d) // the record runs to the end of the datagram
	}
	header := unifiedHeaderLen(b0, 0)
	if len(d) < header {
		return 0
	}
	n := header + int(binary.BigEndian.Uint16(d[header-2:]))
	if n > len(d) {
		return 0
	}
	return n
}

// walk calls fn for each DTLSPlaintext or tls12_cid record of the
// datagram until fn returns false, splitting it the way a DTLS 1.2 stack
// receiving Connection IDs of cidLen bytes does (0 when it negotiated
// none), and returns the part it could not walk: it stops at a record
// whose length it cannot know (a unified header, a foreign byte, tls12_cid
// with CIDUnknown) or that runs past the datagram. fn gets the record's
// content type, epoch and body.
func walk(datagram []byte, cidLen int, fn func(typ byte, epoch uint16, body []byte) bool) (rest []byte) {
	for len(datagram) >= recordHeaderLen {
		b0 := datagram[0]
		if b0 < firstDTLSByte || b0 >= unifiedFixed || datagram[1] != dtlsVersionMajor {
			return datagram
		}
		lenAt := 11
		if b0 == ContentTypeConnectionID {
			if cidLen < 0 {
				return datagram
			}
			lenAt += cidLen
		}
		if len(datagram) < lenAt+2 {
			return datagram
		}
		n := lenAt + 2 + int(binary.BigEndian.Uint16(datagram[lenAt:]))
		if n > len(datagram) {
			return datagram
		}
		if !fn(b0, binary.BigEndian.Uint16(datagram[3:5]), datagram[lenAt+2:n]) {
			return nil
		}
		datagram = datagram[n:]
	}
	return datagram
}

// TypeSet is a set of DTLSPlaintext content types (20..31), one bit each.
type TypeSet uint16

// Has reports whether content type t is in the set.
func (s TypeSet) Has(t uint8) bool { return t >= 20 && t < 32 && s&(1<<(t-20)) != 0 }

// Types returns the set of the given content types.
func Types(ts ...uint8) TypeSet {
	var s TypeSet
	for _, t := range ts {
		if t >= 20 && t < 32 {
			s |= 1 << (t - 20)
		}
	}
	return s
}

// CIDUnknown is the CID length to pass to [Epoch0Types] when the receiver's
// Connection ID length is not known: it stops at the first tls12_cid record.
const CIDUnknown = -1

// Epoch0Types returns the content types of the datagram's epoch-0 records,
// the ones an attacker can write without keys. It splits the datagram into
// records the way a DTLS 1.2 stack receiving Connection IDs of cidLen bytes
// does (0 when it negotiated none), because such a stack acts on each
// record in turn: a forged epoch-0 record behind a harmless one is still
// acted on. It stops at a record whose length it cannot know (a unified
// header, a foreign byte, tls12_cid with CIDUnknown) or that runs past the
// datagram, where pion discards the whole datagram.
func Epoch0Types(datagram []byte, cidLen int) TypeSet {
	var s TypeSet
	walk(datagram, cidLen, func(typ byte, epoch uint16, _ []byte) bool {
		if epoch == 0 {
			s |= 1 << (typ - firstDTLSByte)
		}
		return true
	})
	return s
}
