package relay

import (
	"syscall"

	"github.com/straydtls/straydtls/internal/udpio"
	"golang.org/x/sys/unix"
)

// sendQueue holds what one wake-up of the pump loop forwards to clients,
// for one sendmmsg on the listening socket: under load a wake-up serves
// several upstream sockets (2.7 datagrams a wake-up with the DTLS
// benchmark's 16 clients, 4.8 with raw datagrams), and each sendto saved
// is a system call no client waits for. It is the loop goroutine's own.
type sendQueue struct {
	r    *Relay
	rc   syscall.RawConn // the listening socket
	six  bool            // whose family is AF_INET6 (dual-stack or IPv6)
	n    int
	sent int // of n, by the current flush
	us   [sendBatch]*upstreamConn
	bufs [sendBatch]*[maxDatagram]byte
	m    *udpio.Msgs
	fn   func(fd uintptr) bool
}

const sendBatch = 64

// newSendQueue returns nil when the listening socket cannot take raw
// writes: the loop then sends datagram by datagram.
func newSendQueue(r *Relay) *sendQueue {
	rc, err := r.pc.SyscallConn()
	if err != nil {
		return nil
	}
	q := &sendQueue{r: r, rc: rc, m: udpio.NewMsgs(sendBatch, true)}
	var sa unix.Sockaddr
	if cerr := rc.Control(func(fd uintptr) { sa, err = unix.Getsockname(int(fd)) }); cerr != nil || err != nil {
		return nil
	}
	switch sa.(type) {
	case *unix.SockaddrInet4:
	case *unix.SockaddrInet6:
		q.six = true
	default:
		return nil
	}
	q.fn = q.write
	return q
}

// add queues datagram i of b for u's client, taking its buffer.
func (q *sendQueue) add(u *upstreamConn, b *batch, i int) {
	r := q.r
	a := u.client.Addr()
	if a.Zone() != "" || !q.six && !a.Is4() {
		// A scoped address needs its interface looked up; let the
		// net package do it.
		r.toClient(u, b.datagram(i))
		return
	}
	if q.n == sendBatch {
		q.flush()
	}
	j := q.n
	q.us[j], q.bufs[j] = u, b.bufs[i]
	b.bufs[i] = nil
	q.m.SetSend(j, q.bufs[j][:b.lens[i]], u.client, q.six)
	q.n++
}

// flush sends what is queued and counts it per association, as toClient
// does one datagram at a time.
func (q *sendQueue) flush() {
	if q.n == 0 {
		return
	}
	r := q.r
	q.sent = 0
	for q.sent < q.n {
		err := q.rc.Write(q.fn)
		if err != nil {
			// The listening socket closed (the relay is stopping): what
			// is left is not sent.
			r.counters.writeErrors.Add(uint64(q.n - q.sent))
			break
		}
	}
	for j := range q.n {
		putBuf(q.bufs[j])
		q.bufs[j], q.us[j] = nil, nil
	}
	q.n = 0
}

// write sends from q.sent on; false waits for the socket to take more.
func (q *sendQueue) write(fd uintptr) bool {
	left := q.n - q.sent
	n, errno := q.m.Send(fd, q.sent, left)
	switch {
	case errno == unix.EAGAIN:
		return false
	case errno == unix.EINTR:
		return true // q.sent unchanged: flush tries again
	case errno != 0:
		// The first datagram left failed (sendmmsg reports an error only
		// when none went): count it and go on with the rest.
		q.r.clientWriteFailed(q.us[q.sent].client, errno)
		q.sent++
		return true
	}
	for j := q.sent; j < q.sent+n; j++ {
		q.us[j].toClient.Add(1)
	}
	q.r.counters.toClient.Add(uint64(n))
	q.sent += n
	return true
}
