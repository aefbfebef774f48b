package pionv2

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/straydtls/straydtls/record"
)

// closeNotifyWait bounds how long closing the conn under a pion connection
// waits for its close_notify to be written: far beyond a write's latency on
// a loaded machine, and reached only if pion failed to write it.
const closeNotifyWait = time.Second

// closeOrder is the conn a pion v2 connection runs over once its handshake
// completed. pion/dtls v2.2.12's Conn.Close cancels its read loop before it
// writes its close_notify, and the read loop, woken by that, closes the
// conn under it itself (Conn.close(false)). When the read loop wins, the
// close_notify is never sent, its write finding the conn closed, or is
// written after the association ended, too late for the close echo to keep
// it. (v3 marks the connection closed before it cancels anything.) So once
// the handshake completed, a read cancelled by a deadline in the past means
// Close has begun, and closing the conn waits for the close_notify to pass.
type closeOrder struct {
	net.Conn
	handshook atomic.Bool
	closing   atomic.Bool
	once      sync.Once
	sent      chan struct{} // closed once a closing alert was written after closing began
}

func newCloseOrder(c net.Conn) *closeOrder {
	return &closeOrder{Conn: c, sent: make(chan struct{})}
}

// established arms the close order: until the handshake completed, pion
// cancels reads for other reasons and sends no close_notify.
func (c *closeOrder) established() { c.handshook.Store(true) }

func (c *closeOrder) SetReadDeadline(t time.Time) error {
	// pion cancels a read with a deadline in the past (connctx); after the
	// handshake only Close cancels one.
	if c.handshook.Load() && !t.IsZero() && t.Before(time.Now()) {
		c.closing.Store(true)
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *closeOrder) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	// Signalled once written, so that the conn below has kept the alert
	// (the close echo) before it learns of the close.
	if c.closing.Load() && record.CarriesClosingAlert(b) {
		c.once.Do(func() { close(c.sent) })
	}
	return n, err
}

func (c *closeOrder) Close() error {
	if c.closing.Load() {
		t := time.NewTimer(closeNotifyWait)
		select {
		case <-c.sent:
		case <-t.C:
		}
		t.Stop()
	}
	return c.Conn.Close()
}
