package udpio

import "syscall"

// getBuffers reads SO_RCVBUF and SO_SNDBUF; Linux doubles what it grants
// (socket(7)), so they are halved back to what was asked for.
func getBuffers(fd uintptr) (rcv, snd int) {
	rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	return rcv / 2, snd / 2
}
