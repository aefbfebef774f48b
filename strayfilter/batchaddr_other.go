//go:build !linux

package strayfilter

// batchSys is empty where there is no recvmmsg: ReadBatchAddrPort reads one
// datagram per call.
type batchSys struct{ ok bool }

func (s *batchSys) init(int) {}

func (c *Conn) recvmmsg(*Batch) (int, error) { panic("unreachable") }

// msgTrunc is 0 where x/net reads one message at a time: a batch read there
// goes through ReadFrom, which passes a datagram that fills its buffer.
const msgTrunc = 0
