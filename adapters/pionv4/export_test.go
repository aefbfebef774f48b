package pionv4

import "github.com/pion/dtls/v4"

// CIDSettings is peekConnectionID's reading, for the tests.
type CIDSettings struct {
	Generator func() []byte
	Policy    dtls.CIDPathMigrationPolicy
}

// PeekConnectionID is peekConnectionID, for the tests.
func PeekConnectionID(opts []dtls.ServerOption) (CIDSettings, bool) {
	c, ok := peekConnectionID(opts)
	return CIDSettings{c.generator, c.policy}, ok
}
