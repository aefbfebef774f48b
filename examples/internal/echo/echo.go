// Package echo is the loop the echo examples' servers share: it echoes
// every message on a connection, and logs a line when the connection
// opens and one when it ends.
package echo

import (
	"errors"
	"io"
	"log"
	"net"
)

// Serve echoes on conn until it fails or the client closes, then closes
// it. about, if not empty, is logged with the connection's first line
// (echo-v4 names the DTLS version there).
func Serve(conn net.Conn, about string) {
	defer conn.Close()
	peer := conn.RemoteAddr()
	if about != "" {
		log.Printf("%v: connected (%s)", peer, about)
	} else {
		log.Printf("%v: connected", peer)
	}
	buf := make([]byte, 8192)
	n := 0
	for {
		m, err := conn.Read(buf)
		if err != nil {
			log.Printf("%v: closed after %d messages (%v)", peer, n, why(err))
			return
		}
		n++
		if _, err := conn.Write(buf[:m]); err != nil {
			log.Printf("%v: write: %v", peer, err)
			return
		}
	}
}

func why(err error) string {
	if errors.Is(err, io.EOF) {
		return "the client closed"
	}
	return err.Error()
}
