package assoc

import (
	"errors"
	"fmt"
	"time"

	"github.com/straydtls/straydtls/record"
)

// Config sets a Machine's caps, timeouts and rules. Zero caps and timeouts
// mean none, except where Validate says otherwise.
type Config struct {
	// MaxUnverified caps Unverified associations (rule 1); at least 1.
	MaxUnverified int
	// UnverifiedTimeout ends an association whose client has not proved
	// its address this long after its first ClientHello; positive.
	UnverifiedTimeout time.Duration
	// MaxHandshakes caps verified handshakes under way; 0 for no cap.
	MaxHandshakes int
	// MaxAssociations caps verified associations of every state
	// (handshaking, established, closing); 0 for no cap.
	MaxAssociations int
	// HandshakeTimeout ends a handshake that has not completed this long
	// after its first ClientHello; positive.
	HandshakeTimeout time.Duration
	// IdleTimeout ends an established association after this long with no
	// datagram either way; 0 for never.
	IdleTimeout time.Duration
	// CloseLinger is how long an association lingers after the client's
	// closing alert (rule 6); 0 turns the rule off.
	CloseLinger time.Duration
	// Rehandshake lets a ClientHello with a new random start a handshake
	// beside the peer's established association (RFC 6347 §4.2.8). Off, it
	// goes to the established association, whose stack decides.
	Rehandshake bool
	// InferCompletion completes a verified handshake when its server sends
	// a protected record (rule 7), for shells that cannot ask the stack.
	InferCompletion bool
	// EndOnServerAlert ends an association once its server sent a closing
	// alert (see record.CarriesClosingAlert).
	EndOnServerAlert bool
	// EndOnClientAlert ends a verified handshake once its client's
	// plaintext fatal alert has been delivered to it (rule 10), for shells
	// that cannot ask the stack.
	EndOnClientAlert bool
	// CIDLength is the length of the Connection IDs the server receives
	// (RFC 9146): 0 when it negotiates none, record.CIDUnknown when the
	// shell cannot know. Rule 5 splits datagrams into records with it; a
	// positive length turns on routing by CID (rule 9).
	CIDLength int
	// LearnCIDLength turns on routing by CID with CIDLength 0: the first
	// CID a ServerHello names (or IssueCID reports) sets the length, for
	// shells whose stack does not tell it (pion v4's options are opaque).
	// No record with a CID can be genuine before the server named one.
	LearnCIDLength bool
	// AdoptCID opens an association for a record carrying a CID from an
	// address with none (rule 12), for a shell that may have lost its
	// associations (a relay restarted cold).
	AdoptCID bool
	// DTLS13 says the stack may speak DTLS 1.3, whose ACK records may be
	// sent at epoch 0; otherwise an epoch-0 ACK is invalid too (rule 5).
	DTLS13 bool
}

// ErrInvalidConfig is wrapped by Validate's errors.
var ErrInvalidConfig = errors.New("invalid association config")

// Validate reports the first setting that is out of range.
func (c *Config) Validate() error {
	switch {
	case c.MaxUnverified < 1:
		return fmt.Errorf("max unverified associations %d: must be at least 1: %w", c.MaxUnverified, ErrInvalidConfig)
	case c.UnverifiedTimeout <= 0:
		return fmt.Errorf("unverified timeout %v: must be positive: %w", c.UnverifiedTimeout, ErrInvalidConfig)
	case c.HandshakeTimeout <= 0:
		return fmt.Errorf("handshake timeout %v: must be positive: %w", c.HandshakeTimeout, ErrInvalidConfig)
	case c.MaxHandshakes < 0, c.MaxAssociations < 0:
		return fmt.Errorf("caps %d and %d: must not be negative: %w", c.MaxHandshakes, c.MaxAssociations, ErrInvalidConfig)
	case c.IdleTimeout < 0, c.CloseLinger < 0:
		return fmt.Errorf("idle timeout %v and close linger %v: must not be negative: %w", c.IdleTimeout, c.CloseLinger, ErrInvalidConfig)
	case c.CIDLength < record.CIDUnknown || c.CIDLength > 255:
		return fmt.Errorf("connection ID length %d: must be 0 to 255, or record.CIDUnknown: %w", c.CIDLength, ErrInvalidConfig)
	case c.LearnCIDLength && c.CIDLength != 0:
		return fmt.Errorf("connection ID length %d with LearnCIDLength: a learned length starts at 0: %w", c.CIDLength, ErrInvalidConfig)
	}
	return nil
}
