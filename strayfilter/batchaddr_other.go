//go:build !linux

package strayfilter

// batchSys is empty where there is no recvmmsg: ReadBatchAddrPort reads one
// datagram per call.
type batchSys struct{ ok bool }

func (s *batchSys) init(int) {}

func (c *Conn) recvmmsg(*Batch) (int, error) { panic("unreachable") }
