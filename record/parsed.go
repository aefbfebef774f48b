package record

// Parsed is a datagram's first record, parsed on first use, so that a
// datagram handed through several layers (a filter, a router, a drop
// counter) is parsed once, as tailscale's packet.Parsed travels with its
// packet. Every call must pass the same datagram; Reset before the next
// one. The zero value holds nothing parsed.
type Parsed struct {
	rec Record
	ok  bool
}

// Record returns the first record of datagram, parsing it on the first
// call since the last Reset.
func (p *Parsed) Record(datagram []byte) *Record {
	if !p.ok {
		p.rec.Parse(datagram)
		p.ok = true
	}
	return &p.rec
}

// Done reports whether the record was parsed since the last Reset.
func (p *Parsed) Done() bool { return p.ok }

// Reset forgets the parsed record, for the next datagram.
func (p *Parsed) Reset() { p.ok = false }
