//go:build !linux

package relay

// sendQueue is Linux only (sendmmsg), like the pump loop that fills it.
type sendQueue struct{}

func (q *sendQueue) add(*upstreamConn, *batch, int) {}
