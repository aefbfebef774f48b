package relay

import "github.com/straydtls/straydtls/internal/udpio"

// upstreamWriter writes client datagrams to the upstream sockets the pump
// loop reads, raw (udpio.Writer): with a net.Conn.Write per relayed record
// the runtime's monitor thread took 12 % of the relay's CPU
// (benchmarks/README.md). Each goroutine that reads clients has its own.
type upstreamWriter struct {
	w udpio.Writer
}

func (w *upstreamWriter) write(u *upstreamConn, d []byte) error {
	if u.rc == nil { // not in the loop: a goroutine reads it, or it is not a socket
		_, err := u.conn.Write(d)
		return err
	}
	return w.w.Write(u.rc, d) // waits in the netpoller while the socket is full
}
