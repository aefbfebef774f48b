// Package udpio is the UDP system calls that the Go standard library does
// not make cheap, in one place for strayfilter (and so demux) and the
// relay: recvmmsg and sendmmsg over one mmsghdr vector (Msgs, Recv),
// SO_REUSEPORT for several readers of one address (ReusePort), the socket
// buffers the kernel granted (Buffers), and a raw write(2) on a connected
// socket that skips the runtime's system-call bookkeeping (Writer).
//
// The batched calls are Linux's; elsewhere Recv.OK is false and callers
// read one datagram at a time through the net package, ReusePort says it
// is not implemented, and Buffers reports zeros. Every call made here
// passes MSG_DONTWAIT or writes a non-blocking descriptor, so it cannot
// block: waiting is the netpoller's, through syscall.RawConn.
package udpio
