package strayfilter

// Handshake message types the admission rules read.
const (
	HandshakeTypeServerHello        = 2
	HandshakeTypeHelloVerifyRequest = 3
)

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

// ParseClientHello reads the ClientHello a datagram starts with, if the
// datagram holds that ClientHello's first fragment and the fragment reaches
// past the random. It never panics and does not allocate.
func ParseClientHello(datagram []byte) (ClientHello, bool) {
	var ch ClientHello
	r := Inspect(datagram)
	if !r.OpensAssociation() || r.FragmentOffset != 0 {
		return ch, false
	}
	// Inspect checked that the fragment lies inside the record and the
	// record inside the datagram.
	body := datagram[recordHeaderLen+handshakeHeaderLen : recordHeaderLen+handshakeHeaderLen+int(r.FragmentLength)]
	// client_version(2) random(32) session_id<0..32> cookie<0..255>
	const randomAt, sessionAt = 2, 2 + 32
	if len(body) < sessionAt {
		return ch, false
	}
	copy(ch.Random[:], body[randomAt:sessionAt])
	ch.MessageSeq = r.MessageSeq
	if len(body) <= sessionAt {
		return ch, true
	}
	// The session ID is at most 32 bytes (RFC 5246 §7.4.1.2), but pion
	// reads any length byte, and it is the stack's reading that counts.
	cookieAt := sessionAt + 1 + int(body[sessionAt])
	if len(body) <= cookieAt {
		return ch, true
	}
	if end := cookieAt + 1 + int(body[cookieAt]); end <= len(body) {
		ch.Cookie, ch.CookieRead = body[cookieAt+1:end], true
	}
	return ch, true
}

// HelloVerifyCookie returns the cookie of the HelloVerifyRequest a server's
// datagram starts with (RFC 6347 §4.2.1). It aliases the datagram.
func HelloVerifyCookie(datagram []byte) ([]byte, bool) {
	r := Inspect(datagram)
	if r.Class != ClassHandshake || r.Epoch != 0 || !r.HasHandshakeHeader ||
		r.MsgType != HandshakeTypeHelloVerifyRequest || r.FragmentOffset != 0 {
		return nil, false
	}
	body := datagram[recordHeaderLen+handshakeHeaderLen : recordHeaderLen+handshakeHeaderLen+int(r.FragmentLength)]
	// server_version(2) cookie<0..255>
	if len(body) < 3 || len(body) < 3+int(body[2]) {
		return nil, false
	}
	return body[3 : 3+int(body[2])], true
}

// helloRetryRandom is the ServerHello.random that marks a DTLS 1.3
// HelloRetryRequest (RFC 8446 §4.1.3): SHA-256 of "HelloRetryRequest".
var helloRetryRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// AsksForCookie reports whether a server's datagram only asks the client to
// prove its address: a HelloVerifyRequest, or a DTLS 1.3 HelloRetryRequest.
// Anything else a server sends (a ServerHello, a later or protected record,
// an alert) means it answered the ClientHello.
func AsksForCookie(datagram []byte) bool {
	r := Inspect(datagram)
	if r.Class != ClassHandshake || r.Epoch != 0 || !r.HasHandshakeHeader || r.FragmentOffset != 0 {
		return false
	}
	switch r.MsgType {
	case HandshakeTypeHelloVerifyRequest:
		return true
	case HandshakeTypeServerHello:
		// legacy_version(2) random(32)
		const at = recordHeaderLen + handshakeHeaderLen + 2
		return r.FragmentLength >= 2+32 && [32]byte(datagram[at:at+32]) == helloRetryRandom
	}
	return false
}
