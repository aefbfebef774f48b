//go:build !linux

package relay

import "time"

// pumpLoop is Linux only (epoll): elsewhere a goroutine reads each
// upstream socket.
type pumpLoop struct{}

func (r *Relay) loopAdd(*upstreamConn) bool { return false }
func (l *pumpLoop) retire(*upstreamConn)    {}
func (l *pumpLoop) stop()                   {}

func (l *pumpLoop) setReadDeadline(time.Time) {}
