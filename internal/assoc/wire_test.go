package assoc

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// Datagrams as stacks send them, built byte by byte so each test says
// exactly what is on the wire.

func dtlsRecord(typ byte, epoch uint16, body []byte) []byte {
	d := []byte{typ, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}
	binary.BigEndian.PutUint16(d[3:5], epoch)
	binary.BigEndian.PutUint16(d[11:13], uint16(len(body)))
	return append(d, body...)
}

func handshakeMsg(msgType byte, seq uint16, body []byte) []byte {
	h := []byte{msgType, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	n := len(body)
	h[1], h[2], h[3] = byte(n>>16), byte(n>>8), byte(n)
	binary.BigEndian.PutUint16(h[4:6], seq)
	h[9], h[10], h[11] = byte(n>>16), byte(n>>8), byte(n)
	return dtlsRecord(22, 0, append(h, body...))
}

// clientHello is a ClientHello whose random is 32 bytes of rnd, echoing
// cookie (none on a first ClientHello).
func clientHello(rnd byte, cookie []byte) []byte {
	body := []byte{0xfe, 0xfd}
	for range 32 {
		body = append(body, rnd)
	}
	body = append(body, 0, byte(len(cookie)))
	body = append(body, cookie...)
	body = append(body, 0, 2, 0xc0, 0x2b, 1, 0) // cipher suites, compression
	seq := uint16(0)
	if len(cookie) > 0 {
		seq = 1
	}
	return handshakeMsg(1, seq, body)
}

// laterFragment is a ClientHello fragment that does not start at offset 0.
func laterFragment() []byte {
	d := handshakeMsg(1, 0, make([]byte, 8))
	// message length 100, fragment offset 50, fragment length 8
	d[14], d[15], d[16] = 0, 0, 100
	d[19], d[20], d[21] = 0, 0, 50
	return d
}

func helloVerify(cookie []byte) []byte {
	return handshakeMsg(3, 0, append([]byte{0xfe, 0xff, byte(len(cookie))}, cookie...))
}

func serverHello() []byte {
	body := []byte{0xfe, 0xfd}
	for range 32 {
		body = append(body, 0x5e)
	}
	return handshakeMsg(2, 1, append(body, 0, 0xc0, 0x2b, 0))
}

// helloRetry is a DTLS 1.3 HelloRetryRequest: a ServerHello whose random
// is SHA-256("HelloRetryRequest").
func helloRetry() []byte {
	body := []byte{0xfe, 0xfd,
		0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
		0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c}
	return handshakeMsg(2, 0, append(body, 0, 0x13, 0x01, 0))
}

var (
	clientKeyExchange = handshakeMsg(16, 2, []byte{1, 2, 3, 4})
	changeCipherSpec  = dtlsRecord(20, 0, []byte{1})
	finished          = dtlsRecord(22, 1, make([]byte, 40)) // encrypted, epoch 1
	appData           = dtlsRecord(23, 1, make([]byte, 30))
	encryptedAlert    = dtlsRecord(21, 1, make([]byte, 26))
	plainCloseNotify  = dtlsRecord(21, 0, []byte{1, 0})
	plainFatalAlert   = dtlsRecord(21, 0, []byte{2, 40}) // handshake_failure: a client giving up
	plainAppData      = dtlsRecord(23, 0, []byte("hello"))
	stun              = []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
)

func addr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)}), uint16(40000+i))
}

func ms(n int) int64 { return int64(time.Duration(n) * time.Millisecond) }

// serverHelloCID is a ServerHello whose connection_id extension names cid.
func serverHelloCID(cid []byte) []byte {
	body := []byte{0xfe, 0xfd}
	for range 32 {
		body = append(body, 0x5e)
	}
	ext := append([]byte{0, 54, 0, byte(1 + len(cid)), byte(len(cid))}, cid...)
	body = append(body, 0, 0xc0, 0x2b, 0, 0, byte(len(ext)))
	return handshakeMsg(2, 1, append(body, ext...))
}

// cidRecord is a tls12_cid record at epoch 1 carrying cid.
func cidRecord(cid []byte) []byte {
	d := []byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9}
	d = append(d, cid...)
	return append(d, 0, 24, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)
}
