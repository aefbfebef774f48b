package record

// Handshake message types the inspection reads.
const (
	HandshakeTypeClientHello        = 1
	HandshakeTypeServerHello        = 2
	HandshakeTypeHelloVerifyRequest = 3
)

type helloKind uint8

const (
	helloNone          helloKind = iota
	helloClient                  // a ClientHello's first fragment, holding the random
	helloClientCookie            // and the cookie
	helloVerifyRequest           // a HelloVerifyRequest's first fragment, holding the cookie
	helloRetryRequest            // a DTLS 1.3 HelloRetryRequest
	helloServer                  // another ServerHello
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
		r.hello, r.cookieAt, r.cookieLen = helloClientCookie, uint16(cookie+1), datagram[cookie]
	case HandshakeTypeHelloVerifyRequest:
		// server_version(2) cookie<0..255>
		if end < bodyAt+3 || end < bodyAt+3+int(datagram[bodyAt+2]) {
			return
		}
		r.hello, r.cookieAt, r.cookieLen = helloVerifyRequest, bodyAt+3, datagram[bodyAt+2]
	case HandshakeTypeServerHello:
		r.hello = helloServer
		if end >= randomAt+32 && [32]byte(datagram[randomAt:randomAt+32]) == helloRetryRandom {
			r.hello = helloRetryRequest
		}
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
	// Cookie is the cookie the client echoes from a HelloVerifyRequest,
	// empty before one. It aliases the datagram. DTLS 1.3 carries its
	// cookie in an extension instead, so there it is always empty.
	// CookieRead is false when the first fragment ends before the cookie
	// (a small path MTU); Cookie is then empty too.
	Cookie     []byte
	CookieRead bool
	// MessageSeq is 0 on a first ClientHello and 1 on the one answering a
	// HelloVerifyRequest or HelloRetryRequest.
	MessageSeq uint16
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
	if r.hello == helloClientCookie && len(datagram) >= int(r.cookieAt)+int(r.cookieLen) {
		ch.Cookie, ch.CookieRead = datagram[r.cookieAt:int(r.cookieAt)+int(r.cookieLen)], true
	}
	return ch, true
}

// HelloVerifyCookie returns the cookie of the HelloVerifyRequest a server's
// datagram starts with (RFC 6347 §4.2.1). It aliases the datagram, which
// must be the one r was inspected from.
func (r *Record) HelloVerifyCookie(datagram []byte) ([]byte, bool) {
	if r.hello != helloVerifyRequest || len(datagram) < int(r.cookieAt)+int(r.cookieLen) {
		return nil, false
	}
	return datagram[r.cookieAt : int(r.cookieAt)+int(r.cookieLen)], true
}

// AsksForCookie reports whether a server's datagram only asks the client
// to prove its address: a HelloVerifyRequest, or a DTLS 1.3
// HelloRetryRequest. Anything else a server sends (a ServerHello, a later
// or protected record, an alert) means it answered the ClientHello.
func (r *Record) AsksForCookie() bool {
	return r.Class == ClassHandshake && r.HasHandshakeHeader && r.FragmentOffset == 0 &&
		(r.MsgType == HandshakeTypeHelloVerifyRequest || r.hello == helloRetryRequest)
}

// extensionConnectionID is the connection_id extension (RFC 9146 §3).
const extensionConnectionID = 54

// ServerConnectionID returns the Connection ID a server's ServerHello
// names in its connection_id extension (RFC 9146 §3): the CID the client
// is to put in every tls12_cid record it sends the server. It reads the
// ServerHello the datagram starts with, whole in its first fragment (a
// ServerHello is small; pion never fragments it). ok is false when there
// is no such ServerHello or it carries no connection_id extension; an
// empty CID (the server receives none) is returned with ok true. The CID
// aliases the datagram, which must be the one r was inspected from.
func (r *Record) ServerConnectionID(datagram []byte) (cid []byte, ok bool) {
	if r.hello != helloServer || r.FragmentLength != r.MessageLength {
		return nil, false
	}
	end := bodyAt + int(r.FragmentLength)
	// server_version(2) random(32) session_id<0..32> cipher_suite(2)
	// compression_method(1) extensions<0..2^16-1>
	at := randomAt + 32
	if end <= at {
		return nil, false
	}
	at += 1 + int(datagram[at]) + 2 + 1
	if end < at+2 {
		return nil, false
	}
	extEnd := at + 2 + (int(datagram[at])<<8 | int(datagram[at+1]))
	if extEnd > end {
		return nil, false
	}
	for at += 2; at+4 <= extEnd; {
		typ := int(datagram[at])<<8 | int(datagram[at+1])
		n := int(datagram[at+2])<<8 | int(datagram[at+3])
		at += 4
		if at+n > extEnd {
			return nil, false
		}
		if typ == extensionConnectionID {
			if n < 1 || 1+int(datagram[at]) != n {
				return nil, false
			}
			return datagram[at+1 : at+n], true
		}
		at += n
	}
	return nil, false
}

// ConnectionID returns the CID of the tls12_cid record a datagram starts
// with, for a receiver whose CIDs are n bytes long (RFC 9146 §4: the
// length is not on the wire). The record is one [Inspect] classes
// ClassConnectionID, but no Inspect is needed first: the demultiplexer
// asks on every datagram. The CID aliases the datagram.
func ConnectionID(datagram []byte, n int) ([]byte, bool) {
	if n < 1 || len(datagram) < 11+n+2 || datagram[0] != ContentTypeConnectionID ||
		datagram[1] != dtlsVersionMajor || datagram[3]|datagram[4] == 0 {
		return nil, false
	}
	return datagram[11 : 11+n], true
}
