package udprelay

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/straydtls/straydtls/record"
)

// Recorder is a relay hook that keeps a copy of what each client sends and,
// while HoldAlerts is on, holds back the clients' alerts (their
// close_notify) so a test can deliver them late, after the server closed.
type Recorder struct {
	mu         sync.Mutex
	sent       map[netip.AddrPort][][]byte
	clients    []netip.AddrPort // in the order they first sent
	holdAlerts bool
}

// NewRecorder returns a Recorder that forwards everything.
func NewRecorder() *Recorder { return &Recorder{sent: map[netip.AddrPort][][]byte{}} }

// HoldAlerts makes the hook hold client→server alerts from now on.
func (r *Recorder) HoldAlerts(on bool) {
	r.mu.Lock()
	r.holdAlerts = on
	r.mu.Unlock()
}

// Hook is the Hook.
func (r *Recorder) Hook(p Packet) Verdict {
	if p.Dir != ToServer {
		return Verdict{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sent[p.Client]; !ok {
		r.clients = append(r.clients, p.Client)
	}
	r.sent[p.Client] = append(r.sent[p.Client], bytes.Clone(p.Data))
	if r.holdAlerts && record.Inspect(p.Data).Class == record.ClassAlert {
		return Verdict{Hold: true}
	}
	return Verdict{}
}

// Clients returns the clients seen, in the order they first sent.
func (r *Recorder) Clients() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]netip.AddrPort(nil), r.clients...)
}

// Sent returns copies of every datagram client sent, in order.
func (r *Recorder) Sent(client netip.AddrPort) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]byte, len(r.sent[client]))
	for i, d := range r.sent[client] {
		out[i] = bytes.Clone(d)
	}
	return out
}

// ClientHellos returns the datagrams that client sent that open an
// association (its ClientHellos), in the order it sent them.
func (r *Recorder) ClientHellos(client netip.AddrPort) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var hellos [][]byte
	for _, d := range r.sent[client] {
		if r := record.Inspect(d); r.OpensAssociation() {
			hellos = append(hellos, bytes.Clone(d))
		}
	}
	return hellos
}

// EpochOneHandshake returns the first epoch-1 handshake record (the
// client's Finished) that client sent, cut out of its datagram: the stray
// that stalls pion's listener.
func (r *Recorder) EpochOneHandshake(client netip.AddrPort) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.sent[client] {
		for off := 0; len(d)-off >= 13; {
			n := 13 + int(binary.BigEndian.Uint16(d[off+11:]))
			if off+n > len(d) {
				break
			}
			rec := d[off : off+n]
			if rec[0] == record.ContentTypeHandshake && binary.BigEndian.Uint16(rec[3:5]) == 1 {
				return bytes.Clone(rec), true
			}
			off += n
		}
	}
	return nil, false
}
