package pionv2

import (
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// eventConn records what reaches the conn under closeOrder, in order.
type eventConn struct {
	net.Conn // nil: only what closeOrder calls is implemented
	mu       sync.Mutex
	events   []string
}

func (e *eventConn) add(ev string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
}

func (e *eventConn) got() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events)
}

func (e *eventConn) Write(b []byte) (int, error)        { e.add("write"); return len(b), nil }
func (e *eventConn) Close() error                       { e.add("close"); return nil }
func (e *eventConn) SetReadDeadline(time.Time) error    { return nil }
func (e *eventConn) SetWriteDeadline(t time.Time) error { return nil }

// closeNotify is a DTLS 1.2 close_notify at epoch 1 (AES-GCM), as pion
// v2 writes it: 13 bytes of header and 26 of ciphertext.
var closeNotify = append([]byte{21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 3, 0, 26}, make([]byte, 26)...)

// veryOld is the deadline pion's connctx cancels a read with.
var veryOld = time.Unix(0, 1)

// TestCloseWaitsForTheCloseNotify replays pion v2's Close when its read
// loop wins the race (closeOrder): the read is cancelled, the read loop
// closes the conn, and only then does Close write its close_notify. The
// conn under it must see the close_notify first.
func TestCloseWaitsForTheCloseNotify(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &eventConn{}
		co := newCloseOrder(inner)
		co.established()
		co.SetReadDeadline(veryOld) // Close cancels the read loop
		done := make(chan struct{})
		go func() { // the read loop, woken, closes the conn
			co.Close()
			close(done)
		}()
		synctest.Wait()
		if got := inner.got(); len(got) != 0 {
			t.Fatalf("the conn saw %v before the close_notify was written", got)
		}
		co.Write(closeNotify) // Close's notify
		<-done
		if got, want := inner.got(), []string{"write", "close"}; !slices.Equal(got, want) {
			t.Fatalf("the conn saw %v, want %v", got, want)
		}
	})
}

// TestCloseDoesNotWaitOtherwise: closing does not wait where pion sends no
// close_notify (a handshake that failed, a read that ended on its own) or
// has sent it; and where pion fails to write it, for closeNotifyWait at
// most.
func TestCloseDoesNotWaitOtherwise(t *testing.T) {
	for _, c := range []struct {
		name     string
		prepare  func(co *closeOrder)
		wantWait time.Duration
	}{
		{"during the handshake", func(co *closeOrder) { co.SetReadDeadline(veryOld) }, 0},
		{"no read cancelled", func(co *closeOrder) { co.established() }, 0},
		{"a deadline in the future", func(co *closeOrder) {
			co.established()
			co.SetReadDeadline(time.Now().Add(time.Hour))
		}, 0},
		{"close_notify already written", func(co *closeOrder) {
			co.established()
			co.SetReadDeadline(veryOld)
			co.Write(closeNotify)
		}, 0},
		{"application data is no close_notify", func(co *closeOrder) {
			co.established()
			co.SetReadDeadline(veryOld)
			co.Write(append([]byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 4, 0, 26}, make([]byte, 26)...))
		}, closeNotifyWait},
		{"close_notify never written", func(co *closeOrder) {
			co.established()
			co.SetReadDeadline(veryOld)
		}, closeNotifyWait},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				inner := &eventConn{}
				co := newCloseOrder(inner)
				c.prepare(co)
				start := time.Now()
				co.Close()
				if took := time.Since(start); took != c.wantWait {
					t.Errorf("Close took %v, want %v", took, c.wantWait)
				}
				if got := inner.got(); len(got) == 0 || got[len(got)-1] != "close" {
					t.Errorf("the conn saw %v, want it closed", got)
				}
			})
		})
	}
}
