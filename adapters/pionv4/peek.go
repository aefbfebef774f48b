package pionv4

import (
	"reflect"

	"github.com/pion/dtls/v4"
)

// cidSettings are the settings of a dtls.WithConnectionID among a
// listener's options.
type cidSettings struct {
	generator func() []byte
	policy    dtls.CIDPathMigrationPolicy
}

// peekConnectionID reads what dtls.WithConnectionID set among opts. pion
// v4's options are opaque, but the listener must see each CID pion issues
// (a DTLS 1.3 client that migrates with Path.Probe uses one sent to it
// encrypted, in a NewConnectionID message), so it applies the options, as
// pion does, to a configuration of its own and reads two of its exported
// fields. If a later pion changes what its options are, nothing is read,
// and the listener still routes the CID each ServerHello names
// (TestConnectionIDOptionIsRead fails first).
func peekConnectionID(opts []dtls.ServerOption) (cid cidSettings, ok bool) {
	defer func() {
		if recover() != nil {
			cid, ok = cidSettings{}, false
		}
	}()
	var cfg reflect.Value
	for _, o := range opts {
		v := reflect.ValueOf(o)
		if !v.IsValid() || v.Kind() != reflect.Func || v.Type().NumIn() != 1 || v.Type().In(0).Kind() != reflect.Pointer {
			return cidSettings{}, false
		}
		if !cfg.IsValid() {
			cfg = reflect.New(v.Type().In(0).Elem())
		} else if cfg.Type() != v.Type().In(0) {
			return cidSettings{}, false
		}
		v.Call([]reflect.Value{cfg}) // an option's own error is pion's to report
	}
	if !cfg.IsValid() {
		return cidSettings{}, false
	}
	gen, okGen := field[func() []byte](cfg.Elem(), "ConnectionIDGenerator")
	policy, okPolicy := field[dtls.CIDPathMigrationPolicy](cfg.Elem(), "CIDPathMigrationPolicy")
	if !okGen || !okPolicy || gen == nil {
		return cidSettings{}, false
	}
	return cidSettings{generator: gen, policy: policy}, true
}

func field[T any](s reflect.Value, name string) (T, bool) {
	var zero T
	f := s.FieldByName(name)
	if !f.IsValid() || !f.CanInterface() {
		return zero, false
	}
	v, ok := f.Interface().(T)
	return v, ok
}
