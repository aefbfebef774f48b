//go:build !linux

package relay

// upstreamWriter is Linux only, like the pump loop whose sockets it
// writes: elsewhere upstream writes go through net.Conn.
type upstreamWriter struct{}

func (w *upstreamWriter) write(u *upstreamConn, d []byte) error {
	_, err := u.conn.Write(d)
	return err
}
