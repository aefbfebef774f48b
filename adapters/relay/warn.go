package relay

import "time"

type warning uint8

const (
	warnDial warning = iota
	warnUpstreamWrite
	warnClientWrite
	warnUpstreamDown
	warnRefused
	numWarnings
)

// warnNow reports whether a warning of kind may be logged now: at most one
// line per second per kind, so that a flood of failures is not a flood of
// log lines (the counters keep the full count). Callers build the line
// only when it is, so a suppressed warning costs no allocation.
func (r *Relay) warnNow(kind warning) bool {
	now := r.now()
	last := r.lastWarn[kind].Load()
	return (last == 0 || now-last >= int64(time.Second)) && r.lastWarn[kind].CompareAndSwap(last, now)
}
