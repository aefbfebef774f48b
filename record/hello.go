package record

import "encoding/binary"

// Handshake message types the inspection reads.
const (
	HandshakeTypeClientHello        = 1
	HandshakeTypeServerHello        = 2
	HandshakeTypeHelloVerifyRequest = 3
)

// Hello extensions the inspection reads (RFC 8446 §4.2, RFC 9146 §3).
const (
	extensionEarlyData         = 42
	extensionSupportedVersions = 43
	extensionCookie            = 44
	extensionConnectionID      = 54
)

// versionDTLS13 is DTLS 1.3 as supported_versions names it (RFC 9147 §5.3).
const versionDTLS13 = 0xfefc

type helloKind uint8

const (
	helloNone          helloKind = iota
	helloClient                  // a ClientHello's first fragment, holding the random
	helloClientCookie            // and the legacy cookie
	helloVerifyRequest           // a HelloVerifyRequest's first fragment, holding the cookie
	helloRetryRequest            // a DTLS 1.3 HelloRetryRequest
	helloServer                  // another ServerHello
	helloLater                   // a later fragment of a ClientHello or ServerHello
)

// What a hello fragment's extensions say, one bit each.
const (
	extDTLS13     uint8 = 1 << iota // supported_versions offers (ClientHello) or selects (ServerHello) DTLS 1.3
	extEarlyData                    // a ClientHello's early_data
	extCookie                       // a cookie extension, read whole (cookieAt, cookieLen)
	extCID                          // a ServerHello's connection_id, read whole (cidAt, cidLen)
	extCookieLost                   // a cookie extension whose data runs past the fragment
	extCIDLost                      // a connection_id extension whose data runs past the fragment
)

// Offsets in a datagram whose first record is an epoch-0 handshake record.
const (
	bodyAt   = recordHeaderLen + handshakeHeaderLen
	randomAt = bodyAt + 2 // after client_version / server_version
)

// helloRetryRandom is the ServerHello.random that marks a DTLS 1.3
// HelloRetryRequest (RFC 8446 §4.1.3): SHA-256 of "HelloRetryRequest".
var helloRetryRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// Scan is where a walk through a hello message's extensions stopped at the
// end of a fragment: a DTLS 1.3 ClientHello with a post-quantum key share
// is larger than a datagram, and its cookie extension, which proves the
// client's address, travels in a later fragment (as does a ServerHello's
// connection_id). The zero Scan has nothing left to read.
type Scan struct {
	next, end uint32 // message offsets: the next extension header, the end of the extensions
	length    uint32 // the message's length
	seq       uint16 // its message_seq
	msgType   uint8
	// nhead bytes of the next extension header ended the fragment (at
	// next); the rest begins the next one.
	nhead uint8
	head  [3]byte
}

// Pending reports whether extensions of the message remain to be read in a
// later fragment.
func (s Scan) Pending() bool { return s.next < s.end }

// Scan returns where the walk through the extensions of the hello fragment
// r was read from stopped: pass it to Resume with the message's next
// fragment. It is the zero Scan when the extensions were read to their end
// or cannot be walked.
func (r *Record) Scan() Scan { return r.rest }

// Resume reads the extensions of a later fragment of the hello message s
// was taken from, starting where s stopped, and reports whether the
// datagram's first record is that fragment (same message type, sequence
// and length, and holding the next extension header). What it reads is
// then available from Cookie, ServerConnectionID and DTLS13 as for a first
// fragment, and Scan says where this fragment left the walk. datagram must
// be the one r was inspected from.
func (r *Record) Resume(datagram []byte, s Scan) bool {
	if !s.Pending() || r.Class != ClassHandshake || r.Epoch != 0 || !r.HasHandshakeHeader ||
		r.MsgType != s.msgType || r.MessageSeq != s.seq || r.MessageLength != s.length {
		return false
	}
	off, end := r.FragmentOffset, r.FragmentOffset+r.FragmentLength
	if s.nhead > 0 {
		// The header the last fragment ended inside must go on at this
		// one's start.
		if s.next+uint32(s.nhead) != off || s.next+4 > end {
			return false
		}
	} else if s.next < off || s.next >= end {
		return false
	}
	r.hello, r.ext, r.rest = helloLater, 0, s
	r.walkExtensions(datagram, off)
	return true
}

// inspectHello reads the first fragment of the hello messages that the
// admission rules look at. Inspect has checked that the fragment lies in
// the record and the record in the datagram.
func inspectHello(r *Record, datagram []byte) {
	if r.FragmentOffset != 0 {
		return
	}
	end := bodyAt + int(r.FragmentLength)
	switch r.MsgType {
	case HandshakeTypeClientHello:
		// client_version(2) random(32) session_id<0..32> cookie<0..255>
		// cipher_suites<2..2^16-2> compression_methods<1..2^8-1>
		// extensions<0..2^16-1>
		if end < randomAt+32 {
			return
		}
		r.hello = helloClient
		sid := randomAt + 32
		if end <= sid {
			return
		}
		// The session ID is at most 32 bytes (RFC 5246 §7.4.1.2), but pion
		// reads any length byte, and it is the stack's reading that counts.
		cookie := sid + 1 + int(datagram[sid])
		if end <= cookie || end < cookie+1+int(datagram[cookie]) {
			return
		}
		r.hello, r.cookieAt, r.cookieLen = helloClientCookie, uint16(cookie+1), uint16(datagram[cookie])
		suites := cookie + 1 + int(datagram[cookie])
		if end < suites+2 {
			return
		}
		methods := suites + 2 + int(binary.BigEndian.Uint16(datagram[suites:]))
		if end <= methods {
			return
		}
		r.startExtensions(datagram, methods+1+int(datagram[methods]), end)
	case HandshakeTypeHelloVerifyRequest:
		// server_version(2) cookie<0..255>
		if end < bodyAt+3 || end < bodyAt+3+int(datagram[bodyAt+2]) {
			return
		}
		r.hello, r.cookieAt, r.cookieLen = helloVerifyRequest, bodyAt+3, uint16(datagram[bodyAt+2])
	case HandshakeTypeServerHello:
		// server_version(2) random(32) session_id<0..32> cipher_suite(2)
		// compression_method(1) extensions<0..2^16-1>
		r.hello = helloServer
		if end < randomAt+32 {
			return
		}
		if [32]byte(datagram[randomAt:randomAt+32]) == helloRetryRandom {
			r.hello = helloRetryRequest
		}
		sid := randomAt + 32
		if end <= sid {
			return
		}
		r.startExtensions(datagram, sid+1+int(datagram[sid])+2+1, end)
	}
}

// startExtensions begins the walk through a hello's extensions, whose
// length field is at datagram offset at, in a first fragment ending at
// end. A message that ends before at has no extensions.
func (r *Record) startExtensions(datagram []byte, at, end int) {
	msgAt := uint32(at - bodyAt) // the length field's message offset
	if msgAt >= r.MessageLength || end < at+2 {
		return // no extensions, or their length lies past this fragment
	}
	first := msgAt + 2
	last := first + uint32(binary.BigEndian.Uint16(datagram[at:]))
	if last > r.MessageLength {
		return // an inconsistent length: the stack refuses the message
	}
	r.rest = Scan{next: first, end: last, length: r.MessageLength, seq: r.MessageSeq, msgType: r.MsgType}
	r.walkExtensions(datagram, 0)
}

// walkExtensions reads extension headers from r.rest.next for as long as
// they lie in this fragment (at message offset off, its body at datagram
// offset bodyAt) and notes what the extensions the rules need say. A
// wanted extension whose data runs past the fragment is noted as lost: a
// walk resumed in the next fragment cannot see its start.
func (r *Record) walkExtensions(datagram []byte, off uint32) {
	s := &r.rest
	fragEnd := off + r.FragmentLength
	for s.next < s.end {
		var h [4]byte
		if s.nhead > 0 {
			// Resume put the header's start in s.head; its rest opens this
			// fragment.
			k := copy(h[:], s.head[:s.nhead])
			copy(h[k:], datagram[bodyAt:])
			s.nhead = 0
		} else if s.next+4 > fragEnd {
			// Resume in a later fragment, with what of the header is here.
			if s.next < fragEnd {
				s.nhead = uint8(copy(s.head[:], datagram[bodyAt+int(s.next-off):bodyAt+int(fragEnd-off)]))
			}
			return
		} else {
			copy(h[:], datagram[bodyAt+int(s.next-off):])
		}
		at := bodyAt + int(s.next) - int(off) // before this fragment, by what of the header the last one held
		typ := binary.BigEndian.Uint16(h[:])
		n := uint32(binary.BigEndian.Uint16(h[2:]))
		if s.next+4+n > s.end {
			*s = Scan{} // runs past the extensions: the stack refuses the message
			return
		}
		if s.next+4+n <= fragEnd {
			r.readExtension(typ, datagram[at+4:at+4+int(n)], at+4)
		} else if typ == extensionCookie {
			r.ext |= extCookieLost
		} else if typ == extensionConnectionID {
			r.ext |= extCIDLost
		}
		s.next += 4 + n
	}
	*s = Scan{}
}

// readExtension notes what one extension the rules read says; data is its
// body, at datagram offset at.
func (r *Record) readExtension(typ uint16, data []byte, at int) {
	client := r.MsgType == HandshakeTypeClientHello
	switch typ {
	case extensionSupportedVersions:
		if client {
			// versions<2..254>, two bytes each
			if len(data) < 3 || int(data[0]) != len(data)-1 || data[0]%2 != 0 {
				return
			}
			for i := 1; i+1 < len(data); i += 2 {
				if binary.BigEndian.Uint16(data[i:]) == versionDTLS13 {
					r.ext |= extDTLS13
				}
			}
		} else if len(data) == 2 && binary.BigEndian.Uint16(data) == versionDTLS13 {
			r.ext |= extDTLS13
		}
	case extensionEarlyData:
		if client {
			r.ext |= extEarlyData
		}
	case extensionCookie:
		// cookie<1..2^16-1>
		if len(data) < 3 || int(binary.BigEndian.Uint16(data)) != len(data)-2 {
			return
		}
		if r.hello == helloClientCookie && r.cookieLen > 0 {
			return // the legacy cookie a HelloVerifyRequest asked for is the one
		}
		r.ext |= extCookie
		r.cookieAt, r.cookieLen = uint16(at+2), uint16(len(data)-2)
	case extensionConnectionID:
		// cid<0..2^8-1>
		if client || len(data) < 1 || int(data[0]) != len(data)-1 {
			return
		}
		r.ext |= extCID
		r.cidAt, r.cidLen = uint16(at+1), data[0]
	}
}

// ClientHello is what the first fragment of a ClientHello says about the
// handshake it belongs to: enough to tell a copy of a handshake's
// ClientHello from a new handshake, and the cookie echo that proves the
// client receives what is sent to its address.
type ClientHello struct {
	// Random is the client random. Every ClientHello of one handshake
	// carries the same (RFC 6347 §4.2.1); a new handshake draws a new one.
	Random [32]byte
	// Cookie is the cookie the client echoes, empty before one: the
	// legacy cookie field's (DTLS 1.2, from a HelloVerifyRequest), or the
	// cookie extension's (DTLS 1.3, from a HelloRetryRequest). It aliases
	// the datagram. CookieRead is false when the fragment ends before the
	// client's cookie could be known: inside the legacy field, or before
	// the end of the extensions (Scan then says where to go on; a 1.3
	// cookie extension sits behind a key share that may fill a datagram).
	Cookie     []byte
	CookieRead bool
	// MessageSeq is 0 on a first ClientHello and 1 on the one answering a
	// HelloVerifyRequest or HelloRetryRequest.
	MessageSeq uint16
	// DTLS13 reports that supported_versions offers DTLS 1.3; EarlyData,
	// that the client sends 0-RTT data behind it (early_data). Both are
	// false when those extensions lie past this fragment.
	DTLS13, EarlyData bool
}

// ClientHello returns what the ClientHello the datagram starts with says,
// if the datagram holds its first fragment and that reaches past the
// random. datagram must be the one r was inspected from; nothing is read
// twice.
func (r *Record) ClientHello(datagram []byte) (ClientHello, bool) {
	var ch ClientHello
	if r.hello != helloClient && r.hello != helloClientCookie || len(datagram) < randomAt+32 {
		return ch, false
	}
	ch.Random = [32]byte(datagram[randomAt : randomAt+32])
	ch.MessageSeq = r.MessageSeq
	ch.DTLS13, ch.EarlyData = r.ext&extDTLS13 != 0, r.ext&extEarlyData != 0
	if r.hello == helloClientCookie {
		ch.Cookie, _ = r.Cookie(datagram)
		ch.CookieRead = len(ch.Cookie) > 0 || !r.rest.Pending() && r.ext&extCookieLost == 0
	}
	return ch, true
}

// Cookie returns the cookie the hello fragment carries whole: the one a
// HelloVerifyRequest or HelloRetryRequest asks the client to echo, or the
// one a ClientHello echoes (in the legacy field, or in the cookie
// extension of a fragment Resume read). It aliases the datagram, which
// must be the one r was inspected from.
func (r *Record) Cookie(datagram []byte) ([]byte, bool) {
	switch {
	case r.hello == helloVerifyRequest,
		r.hello == helloClientCookie && (r.cookieLen > 0 || r.ext&extCookie != 0),
		r.ext&extCookie != 0:
	default:
		return nil, false
	}
	end := int(r.cookieAt) + int(r.cookieLen)
	if len(datagram) < end {
		return nil, false
	}
	return datagram[r.cookieAt:end], true
}

// AsksForCookie reports whether a server's datagram only asks the client
// to prove its address: a HelloVerifyRequest, or a DTLS 1.3
// HelloRetryRequest. Anything else a server sends (a ServerHello, a later
// or protected record, an alert) means it answered the ClientHello.
func (r *Record) AsksForCookie() bool {
	return r.Class == ClassHandshake && r.HasHandshakeHeader && r.FragmentOffset == 0 &&
		(r.MsgType == HandshakeTypeHelloVerifyRequest || r.hello == helloRetryRequest)
}

// DTLS13 reports whether the hello fragment's supported_versions offers
// (ClientHello) or selects (ServerHello) DTLS 1.3.
func (r *Record) DTLS13() bool { return r.ext&extDTLS13 != 0 }

// EarlyData reports whether the ClientHello fragment holds the early_data
// extension: 0-RTT data follows the ClientHello. A resumption's
// ClientHello with a post-quantum key share carries it in its second
// fragment (read it with Resume).
func (r *Record) EarlyData() bool { return r.ext&extEarlyData != 0 }

// ServerConnectionID returns the Connection ID a server's ServerHello
// names in its connection_id extension (RFC 9146 §3, RFC 9147 §9): the CID
// the client is to put in every record it protects for the server. A DTLS
// 1.3 ServerHello with a post-quantum key share spans two datagrams and
// names its CID in the second: read that fragment with Resume first. ok is
// false when the fragment holds no connection_id extension whole; an empty
// CID (the server receives none) is returned with ok true. The CID aliases
// the datagram, which must be the one r was inspected from.
func (r *Record) ServerConnectionID(datagram []byte) (cid []byte, ok bool) {
	if r.ext&extCID == 0 || r.hello != helloServer && r.hello != helloLater {
		return nil, false
	}
	end := int(r.cidAt) + int(r.cidLen)
	if len(datagram) < end {
		return nil, false
	}
	return datagram[r.cidAt:end], true
}

// ConnectionID returns the CID of the record a datagram starts with, when
// that record carries one: a tls12_cid record (RFC 9146 §4) or a DTLS 1.3
// unified header with its C bit set (RFC 9147 §4), for a receiver whose
// CIDs are n bytes long (the length is not on the wire). No Inspect is
// needed first: the demultiplexer asks on every datagram. The CID aliases
// the datagram.
func ConnectionID(datagram []byte, n int) ([]byte, bool) {
	if n < 1 || len(datagram) == 0 {
		return nil, false
	}
	b0 := datagram[0]
	if b0&unifiedMask == unifiedFixed {
		if b0&unifiedC == 0 || len(datagram) < unifiedHeaderLen(b0, n) {
			return nil, false
		}
		return datagram[1 : 1+n], true
	}
	if len(datagram) < 11+n+2 || b0 != ContentTypeConnectionID ||
		datagram[1] != dtlsVersionMajor || datagram[3]|datagram[4] == 0 {
		return nil, false
	}
	return datagram[11 : 11+n], true
}

// HasConnectionID reports whether the record a datagram starts with
// carries a CID, whatever its length: a tls12_cid record, or a DTLS 1.3
// unified header with its C bit set.
func HasConnectionID(datagram []byte) bool {
	if len(datagram) == 0 {
		return false
	}
	b0 := datagram[0]
	return b0 == ContentTypeConnectionID || b0&unifiedMask == unifiedFixed && b0&unifiedC != 0
}
