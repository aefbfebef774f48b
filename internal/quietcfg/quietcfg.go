// Package quietcfg is the quiet-peer settings that strayfilter, the relay
// and strayguard each take as options of their own (quiet period, cap,
// clock, a shared table), checked and applied in one place: the checks are
// conntrack's own options, and Config builds the table or takes the shared
// one, refusing settings a shared table would silently override.
package quietcfg

import (
	"errors"
	"fmt"

	"github.com/straydtls/straydtls/conntrack"
)

// Check reports what is wrong with a table option, without a table: the
// error says which value and why, for the caller to wrap with its name.
func Check(o conntrack.Option) error {
	var probe conntrack.Table
	return o(&probe)
}

// Config collects the table options a package was given.
type Config struct {
	opts   []conntrack.Option
	names  []string // of the options in opts, for the conflict with Share
	shared *conntrack.Table
}

// Set checks o, which the caller's option called name (WithQuietPeriod)
// stands for, and keeps it for Table.
func (c *Config) Set(name string, o conntrack.Option) error {
	if err := Check(o); err != nil {
		return err
	}
	c.opts = append(c.opts, o)
	c.names = append(c.names, name)
	return nil
}

// Share makes Table return t.
func (c *Config) Share(t *conntrack.Table) error {
	if t == nil {
		return errors.New("table is nil")
	}
	c.shared = t
	return nil
}

// Table returns the shared table, or a new one with the options set. A
// shared table carries its own settings, so options set beside it are an
// error that names the first.
func (c *Config) Table() (*conntrack.Table, error) {
	if c.shared != nil {
		if len(c.names) > 0 {
			return nil, fmt.Errorf("%s conflicts with WithTable: a shared table has its own quiet period, cap and clock", c.names[0])
		}
		return c.shared, nil
	}
	return conntrack.New(c.opts...)
}
