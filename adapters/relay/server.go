package relay

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/straydtls/straydtls/internal/assoc"
)

// pump forwards the server's datagrams to the client until the machine
// ends the association (which closes its socket) or the relay closes: the
// goroutine per upstream socket that the pump loop (pumploop_linux.go)
// replaces where it can.
func (r *Relay) pump(u *upstreamConn) {
	defer r.wg.Done()
	defer r.frz.leave()
	defer r.pumpDone(u)
	read := upstreamReader(u.conn)
	var b batch
	for {
		if err := read(&b); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && r.frz.park() {
				continue // Freeze set it, and Thaw ended it
			}
			if transient(err) && !errors.Is(err, os.ErrDeadlineExceeded) {
				// The server's port is closed (ICMP). It may come back; the
				// machine's timeouts end the association if it does not.
				r.upstreamDown(u, err)
				continue
			}
			return
		}
		if r.fromServer(u, &b, nil) {
			return
		}
	}
}

// fromServer hands the machine what one read of u's socket returned,
// forwards what it lets through and releases the batch. It reports
// whether the machine ended the association. With out, the datagrams for
// the client are queued there (taking their buffers) and sent with the
// others of the pump loop's wake-up; without, each is sent now.
func (r *Relay) fromServer(u *upstreamConn, b *batch, out *sendQueue) bool {
	var verdicts [len(b.bufs)]assoc.Verdict
	// The machine sees every datagram the server queued before the
	// client sees any of them: a close_notify queued behind the last
	// reply quiets the client before the reply can prompt its own.
	ended := false
	if u.a != nil { // nil: a naive association
		r.sh.Lock()
		for i := 0; i < b.n && !ended; i++ {
			verdicts[i] = r.sm.Server(r.now(), u.a, b.datagram(i))
			ended = verdicts[i].Ended
		}
		r.sh.Unlock()
	}
	for i := range b.n {
		if u.a == nil || verdicts[i].Forward {
			if out != nil {
				out.add(u, b, i)
			} else {
				r.toClient(u, b.datagram(i))
			}
		}
		if u.a != nil && verdicts[i].Ended {
			break
		}
	}
	b.release()
	return ended
}

func (r *Relay) toClient(u *upstreamConn, d []byte) {
	if _, err := r.pc.WriteToUDPAddrPort(d, u.client); err != nil {
		r.clientWriteFailed(u.client, err)
		return
	}
	u.toClient.Add(1)
	r.counters.toClient.Add(1)
}

// clientWriteFailed counts a datagram the kernel would not send to client.
func (r *Relay) clientWriteFailed(client netip.AddrPort, err error) {
	r.counters.writeErrors.Add(1)
	if r.warnNow(warnClientWrite) {
		r.log.Warn("writing to client failed", "client", client, "err", err)
	}
}

// pumpDone releases what is left of u once its pump returns.
func (r *Relay) pumpDone(u *upstreamConn) {
	u.close()
	r.sh.Lock()
	if u.a != nil {
		// A socket error the machine did not cause (or shutdown): the
		// association ends here, quieting nobody.
		r.sm.Abort(u.a)
	} else if r.naive[u.client] == u {
		delete(r.naive, u.client)
	}
	delete(r.all, u)
	r.sh.Unlock()
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		reason := "socket closed or relay stopped"
		if e := u.end.Load(); e != 0 {
			reason = assoc.EndReason(e - 1).String()
		}
		r.log.Debug("association ended", "client", u.client, "reason", reason,
			"duration", time.Duration(r.now()-u.opened), "to_server", u.toServer.Load(), "to_client", u.toClient.Load())
	}
	if r.ended != nil {
		r.ended(u.conn.LocalAddr())
	}
}

// upstreamDown counts an ICMP report that the server refused a datagram or
// is unreachable, read on or written into u's socket.
func (r *Relay) upstreamDown(u *upstreamConn, err error) {
	r.counters.upstreamErrors.Add(1)
	if r.warnNow(warnUpstreamDown) {
		r.log.Warn("the upstream refused a datagram or is unreachable", "upstream", u.conn.RemoteAddr(), "client", u.client, "err", err)
	}
}
