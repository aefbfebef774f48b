package relay

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pumpLoop reads every upstream socket from one goroutine: a
// level-triggered epoll set of the sockets, itself parked in Go's
// netpoller, so a wake-up serves every socket that is ready. A goroutine
// per socket costs a netpoller wake-up per server datagram, and a read
// that finds the socket empty before each wait (Go's poller forgets
// readiness at the start of every read); the loop reads a socket only
// when epoll says it holds a datagram. benchmarks/README.md has what that
// was worth.
//
// Only the loop closes the sockets it reads: anyone else retires one, and
// the loop closes it and runs its pumpDone once it is not reading it, so
// nothing is forwarded on an association after its end is reported.
//
// One goroutine serves every association, so a write to a client that
// blocks (the listening socket's send buffer full) holds up the others
// until it drains, as it would hold up nginx's worker.
type pumpLoop struct {
	r    *Relay
	ep   *os.File // the epoll descriptor, in Go's netpoller
	epfd int      // ep's descriptor (ep.Fd would make it blocking)
	rc   syscall.RawConn
	wake int // an eventfd in the set (id 0): retire and stop write it

	mu       sync.Mutex
	byID     map[uint32]*upstreamConn
	next     uint32
	retired  []*upstreamConn
	stopping bool
	dead     bool // the loop returned and closed wake

	// The loop goroutine's own.
	out    *sendQueue // nil: send datagram by datagram
	events [64]unix.EpollEvent
	ready  [64]*upstreamConn // events' sockets, looked up under one lock
	n      int
	b      batch
	rr     rawReader
	waitFn func(fd uintptr) bool
	readFn func(fd uintptr) bool
}

// loopAdd has the pump loop read u's socket, starting the loop with the
// first association. It returns false where the loop cannot (a conn that
// is not a socket, or epoll failing): u then gets a goroutine.
func (r *Relay) loopAdd(u *upstreamConn) bool {
	if r.noLoop {
		return false
	}
	sc, ok := u.conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	if r.loop == nil {
		if r.loop, err = newPumpLoop(r); err != nil {
			r.noLoop = true
			r.log.Warn("no epoll loop for upstream sockets; a goroutine reads each", "err", err)
			return false
		}
	}
	return r.loop.add(u, rc)
}

func newPumpLoop(r *Relay) (*pumpLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// Non-blocking, so os.NewFile puts it in the netpoller: the loop
	// parks there when no socket is ready.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, os.NewSyscallError("fcntl", err)
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		unix.Close(wake)
		return nil, err
	}
	l := &pumpLoop{r: r, ep: ep, epfd: epfd, rc: rc, wake: wake, byID: make(map[uint32]*upstreamConn)}
	l.waitFn, l.readFn = l.wait, l.read
	l.out = newSendQueue(r)
	r.wg.Add(1)
	r.frz.join()
	go l.run()
	return l, nil
}

// add puts u's socket in the set. Called with the shell's lock held, never after the
// relay closed.
func (l *pumpLoop) add(u *upstreamConn, rc syscall.RawConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return false
	}
	for {
		l.next++
		if l.next > 1<<31-1 {
			l.next = 1
		}
		if l.byID[l.next] == nil {
			break
		}
	}
	var err error
	cerr := rc.Control(func(fd uintptr) {
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.next)})
	})
	if cerr != nil || err != nil {
		return false
	}
	u.id, u.rc = l.next, rc
	l.byID[u.id] = u
	return true
}

// retire has the loop close u's socket and report its end.
func (l *pumpLoop) retire(u *upstreamConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		// The loop finished everything it read when it returned.
		u.close()
		return
	}
	l.retired = append(l.retired, u)
	l.pokeLocked()
}

// stop ends the loop once it has retired everything (Relay.Close).
func (l *pumpLoop) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopping = true
	if !l.dead {
		l.pokeLocked()
	}
}

// pokeLocked wakes the loop. Under l.mu, so that wake is not closed (and
// its number reused) meanwhile.
func (l *pumpLoop) pokeLocked() {
	one := [8]byte{1} // adds to the eventfd counter: any non-zero value wakes it
	unix.Write(l.wake, one[:])
}

func (l *pumpLoop) run() {
	defer l.r.wg.Done()
	defer l.r.frz.leave()
	for {
		if l.drain() {
			break
		}
		if err := l.rc.Read(l.waitFn); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && l.r.frz.park() {
				continue // Freeze set it, and Thaw ended it
			}
			break
		}
		// One lock for the wake-up's lookups: only the loop removes a
		// socket from the set, so what it finds stays there until served.
		l.mu.Lock()
		for i, ev := range l.events[:l.n] {
			l.ready[i] = l.byID[uint32(ev.Fd)] // nil for the eventfd (id 0)
		}
		l.mu.Unlock()
		for i, u := range l.ready[:l.n] {
			if u != nil {
				l.serve(u)
				l.ready[i] = nil
			} else if l.events[i].Fd == 0 {
				var buf [8]byte
				unix.Read(l.wake, buf[:])
			}
		}
		l.flush()
	}
	// Stopping (or the epoll descriptor failing): whatever is left ends
	// here, and a socket opened from now on gets a goroutine.
	l.mu.Lock()
	l.stopping = true
	left := make([]*upstreamConn, 0, len(l.byID))
	for _, u := range l.byID {
		left = append(left, u)
	}
	l.mu.Unlock()
	for _, u := range left {
		l.finish(u)
	}
	l.mu.Lock()
	l.dead = true
	l.ep.Close()
	unix.Close(l.wake)
	l.mu.Unlock()
}

// drain closes what was retired; it reports whether the loop should stop.
func (l *pumpLoop) drain() bool {
	for {
		l.mu.Lock()
		rs := l.retired
		l.retired = nil
		stopping := l.stopping
		l.mu.Unlock()
		if len(rs) == 0 {
			return stopping
		}
		for _, u := range rs {
			l.finish(u)
		}
	}
}

// wait takes the ready sockets without blocking; false parks the loop in
// the netpoller until the set has one.
func (l *pumpLoop) wait(fd uintptr) bool {
	// Raw: a zero timeout cannot block (see upstreamWriter).
	r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
	n := int(r)
	if errno != 0 {
		n = 0
	}
	l.n = n
	return n > 0
}

// serve reads one batch from u's socket, which epoll says is ready.
func (l *pumpLoop) serve(u *upstreamConn) {
	l.rr.b, l.rr.err = &l.b, nil
	err := u.rc.Read(l.readFn)
	l.rr.b = nil
	switch {
	case err != nil:
		l.finish(u)
	case l.b.n > 0:
		// An error after datagrams waits for the next read.
		if l.r.fromServer(u, &l.b, l.out) {
			l.finish(u)
		}
	case l.rr.err == nil:
		// Nothing queued after all (a spurious readiness): nothing to do.
	case transient(l.rr.err):
		// The server's port is closed (ICMP). It may come back; the
		// machine's timeouts end the association if it does not.
		l.r.upstreamDown(u, l.rr.err)
	default:
		l.finish(u)
	}
}

// flush sends what this wake-up queued for clients.
func (l *pumpLoop) flush() {
	if l.out != nil {
		l.out.flush()
	}
}

// read is readFD that never waits: the loop only reads ready sockets.
func (l *pumpLoop) read(fd uintptr) bool {
	l.rr.readFD(fd)
	return true
}

// finish takes u out of the set, closes its socket and reports its end,
// once: it is the loop's pumpDone.
func (l *pumpLoop) finish(u *upstreamConn) {
	l.mu.Lock()
	mine := l.byID[u.id] == u
	if mine {
		delete(l.byID, u.id)
	}
	l.mu.Unlock()
	if !mine {
		return
	}
	// What the loop queued for u's client goes before u's end is
	// reported: nothing is forwarded on an association after that.
	l.flush()
	u.rc.Control(func(fd uintptr) { unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	l.r.pumpDone(u)
}

// setReadDeadline makes the loop's wait for ready sockets fail at t
// (Freeze), or not (the zero t).
func (l *pumpLoop) setReadDeadline(t time.Time) { l.ep.SetReadDeadline(t) }
