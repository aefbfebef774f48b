package dtlstest

import "encoding/binary"

// Datagrams built byte by byte, for peers that play DTLS without keys: the
// relay benchmark's raw mode, which measures the relays alone.

// Record is one DTLSPlaintext record (DTLS 1.2) of content type typ.
func Record(typ byte, epoch uint16, seq uint64, body []byte) []byte {
	d := make([]byte, 13, 13+len(body))
	d[0], d[1], d[2] = typ, 0xfe, 0xfd
	binary.BigEndian.PutUint16(d[3:5], epoch)
	d[5], d[6] = byte(seq>>40), byte(seq>>32)
	binary.BigEndian.PutUint32(d[7:11], uint32(seq))
	binary.BigEndian.PutUint16(d[11:13], uint16(len(body)))
	return append(d, body...)
}

func handshake(msgType byte, seq uint16, body []byte) []byte {
	n := len(body)
	h := []byte{msgType, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}
	binary.BigEndian.PutUint16(h[4:6], seq)
	return Record(22, 0, uint64(seq), append(h, body...))
}

// Hello is a ClientHello with the given random, echoing cookie (none on a
// first ClientHello).
func Hello(random [32]byte, cookie []byte) []byte {
	body := append([]byte{0xfe, 0xfd}, random[:]...)
	body = append(body, 0, byte(len(cookie)))
	body = append(body, cookie...)
	body = append(body, 0, 2, 0xc0, 0x2b, 1, 0) // one cipher suite, no compression
	seq := uint16(0)
	if len(cookie) > 0 {
		seq = 1
	}
	return handshake(1, seq, body)
}

// HelloVerify is a HelloVerifyRequest asking for cookie.
func HelloVerify(cookie []byte) []byte {
	return handshake(3, 0, append([]byte{0xfe, 0xff, byte(len(cookie))}, cookie...))
}
