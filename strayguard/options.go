package strayguard

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/quietcfg"
)

// DefaultQuietPeriod and DefaultMaxQuietPeers are the library's, so a
// server behind strayguard is quiet as long as one wrapped in strayfilter.
const (
	DefaultQuietPeriod   = conntrack.DefaultQuietPeriod
	DefaultMaxQuietPeers = conntrack.DefaultMaxQuietPeers
)

// DefaultPinRoot is where the daemon pins its programs and state, one
// directory per interface (see PinDir).
const DefaultPinRoot = "/sys/fs/bpf/straydtls"

// MaxPorts is how many server ports one Guard can watch.
const MaxPorts = 64

var (
	// ErrInvalidOption is wrapped by every error Attach returns for a bad
	// option or argument.
	ErrInvalidOption = conntrack.ErrInvalidOption
	// ErrNotSupported is wrapped by Attach's error where BPF programs at
	// tcx cannot run: on another OS, or a kernel older than Linux 6.6.
	ErrNotSupported = errors.New("not supported")
	// ErrPermission is wrapped by Attach's error when the process may not
	// load BPF programs or attach them (it needs root, or CAP_BPF and
	// CAP_NET_ADMIN).
	ErrPermission = errors.New("permission denied")
	// ErrGuarded is wrapped by Attach's error when another Guard already
	// watches one of the ports on the interface, or holds the pin directory.
	ErrGuarded = errors.New("already guarded")
)

// Option configures Attach.
type Option func(*config) error

type config struct {
	quiet    time.Duration
	maxPeers int
	pinDir   string
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("strayguard: "+format+": %w", append(args, ErrInvalidOption)...)
}

// WithQuietPeriod sets how long a client stays quiet after the server's
// closing alert (default DefaultQuietPeriod). It must be positive.
func WithQuietPeriod(d time.Duration) Option {
	return func(c *config) error {
		if err := quietcfg.Check(conntrack.WithQuietPeriod(d)); err != nil {
			return invalid("%w", err)
		}
		c.quiet = d
		return nil
	}
}

// WithMaxQuietPeers caps the quiet map (default DefaultMaxQuietPeers). At the
// cap the kernel evicts the least recently used entries, in small batches.
func WithMaxQuietPeers(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<24 {
			return invalid("max quiet peers %d must be between 1 and 16,777,216", n)
		}
		c.maxPeers = n
		return nil
	}
}

// WithPinDir pins the programs' links and maps in dir, which must lie on a
// bpf file system (Attach mounts one at /sys/fs/bpf when none is). A pinned
// Guard outlives its process: Close leaves the filter running with its quiet
// clients and counters, and the next Attach with the same dir adopts them,
// replacing the programs with its own. Detach removes them. Without it,
// Close detaches the programs.
func WithPinDir(dir string) Option {
	return func(c *config) error {
		if dir == "" || !filepath.IsAbs(dir) {
			return invalid("pin directory %q must be an absolute path", dir)
		}
		c.pinDir = filepath.Clean(dir)
		return nil
	}
}

// PinDir is the pin directory the daemon uses for an interface.
func PinDir(iface string) string { return filepath.Join(DefaultPinRoot, iface) }

func newConfig(ports []uint16, opts []Option) (config, error) {
	c := config{quiet: DefaultQuietPeriod, maxPeers: DefaultMaxQuietPeers}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return c, err
		}
	}
	if len(ports) == 0 || len(ports) > MaxPorts {
		return c, invalid("%d ports given; want 1 to %d", len(ports), MaxPorts)
	}
	for _, p := range ports {
		if p == 0 {
			return c, invalid("port 0 cannot be guarded")
		}
	}
	return c, nil
}
