package daemon

import (
	"errors"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/straydtls/straydtls/record"
)

// CheckMetrics checks the -metrics and -pprof flags: an address to listen
// on, and with -pprof a loopback one, because profiles show the process's
// memory.
func CheckMetrics(addr string, pprof bool) error {
	if addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("-metrics %q: %w", addr, err)
		}
	}
	if pprof {
		if addr == "" {
			return errors.New("-pprof needs -metrics: it serves on that listener")
		}
		if err := LoopbackOnly(addr); err != nil {
			return fmt.Errorf("-metrics %q with -pprof (profiles show the process's memory): %w", addr, err)
		}
	}
	return nil
}

// Metric is one of a daemon's counters or gauges, as /metrics exports it
// and the stats line names it. Key is its name in the daemon's counters
// (its Stats.Map), so both read the same number.
type Metric struct {
	Name  string // without the daemon's prefix; counters end in _total
	Key   string
	Gauge bool
	Help  string
}

// Counters is one snapshot of a daemon's counters: by key, and the strays
// it dropped by reason.
type Counters struct {
	Values map[string]uint64
	Strays [record.NumReasons]uint64
}

// straysName is exported with a reason label; the stats line gives the
// total and the reasons.
const straysName = "strays_total"

// Exporter exports a daemon's counters at each scrape, from one snapshot:
// nothing is kept between scrapes. It is a prometheus.Collector.
type Exporter struct {
	prefix  string
	metrics []Metric
	read    func() (Counters, error)
	descs   []*prometheus.Desc
	strays  *prometheus.Desc
}

// NewExporter exports metrics, each named prefix+Name, and
// prefix+"strays_total"{reason} described by straysHelp, from read.
func NewExporter(prefix string, metrics []Metric, straysHelp string, read func() (Counters, error)) *Exporter {
	e := &Exporter{prefix: prefix, metrics: metrics, read: read}
	for _, m := range metrics {
		e.descs = append(e.descs, prometheus.NewDesc(prefix+m.Name, m.Help, nil, nil))
	}
	e.strays = prometheus.NewDesc(prefix+straysName, straysHelp, []string{"reason"}, nil)
	return e
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range e.descs {
		ch <- d
	}
	ch <- e.strays
}

// Collect implements prometheus.Collector.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	c, err := e.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(e.strays, err)
		return
	}
	for i, m := range e.metrics {
		kind := prometheus.CounterValue
		if m.Gauge {
			kind = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(e.descs[i], kind, float64(c.Values[m.Key]))
	}
	for i, v := range c.Strays {
		ch <- prometheus.MustNewConstMetric(e.strays, prometheus.CounterValue, float64(v), record.Reason(i).String())
	}
}

// StatsArgs is the stats line: every metric /metrics exports, under the
// same name, the strays' total and the strays by reason.
func (e *Exporter) StatsArgs() []any {
	c, err := e.read()
	if err != nil {
		return []any{"err", err}
	}
	args := make([]any, 0, 2*len(e.metrics)+4)
	for _, m := range e.metrics {
		args = append(args, e.prefix+m.Name, c.Values[m.Key])
	}
	var total uint64
	for _, v := range c.Strays {
		total += v
	}
	return append(args, e.prefix+straysName, total, "strays_by_reason", StraysByReason(&c.Strays))
}
