//go:build !linux

package udpio

import (
	"errors"
	"net/netip"
	"syscall"
)

// Recv is Linux's recvmmsg; here OK is false and callers read one
// datagram at a time through the net package.
type Recv struct{}

// NewRecv returns nil here: there is no batched read.
func NewRecv(int) *Recv { return nil }

// OK reports whether Read works here (not on this system).
func (r *Recv) OK() bool { return false }

// Read is not implemented here.
func (r *Recv) Read(syscall.RawConn, [][]byte, []int, []netip.AddrPort, []bool) (int, error) {
	return 0, errors.ErrUnsupported
}

// MsgTrunc is 0 where x/net reads one message at a time: a batch read there
// goes through ReadFrom, which passes a datagram that fills its buffer.
const MsgTrunc = 0
