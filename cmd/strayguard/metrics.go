package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/straydtls/straydtls/cmd/internal/daemon"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayguard"
)

// metric is one of the guard's counters or gauges, as /metrics exports it
// and the stats line names it; key is its name in strayguard.Stats.Map.
// The names strayrelay also has (quiet_clients, strays_total) mean the same.
type metric struct {
	name  string // without the strayguard_ prefix; counters end in _total
	key   string
	gauge bool
	help  string
}

const metricPrefix = "strayguard_"

var metrics = []metric{
	{"quiet_clients", "quiet_clients", true, "Clients in their quiet period after the server's closing alert (expired ones not yet removed included)."},
	{"closing_alerts_total", "closing_alerts", false, "The server's datagrams carrying a closing alert, each starting or restarting a client's quiet period."},
	{"server_hellos_total", "server_hellos", false, "Quiet periods ended early by the server's ServerHello to the client."},
	{"expired_total", "expired", false, "Quiet periods found over and removed."},
	{"hellos_total", "hellos", false, "ClientHellos let through from quiet clients."},
	{"foreign_total", "foreign", false, "Datagrams of other protocols let through from quiet clients."},
}

const straysName = "strays_total"

// collector exports the guard's counters at each scrape, from one Stats
// snapshot, and the programs' run time when kernel.bpf_stats_enabled is on.
type collector struct {
	g                 *strayguard.Guard
	descs             []*prometheus.Desc
	strays, runs, run *prometheus.Desc
}

func newCollector(g *strayguard.Guard) *collector {
	c := &collector{g: g}
	for _, m := range metrics {
		c.descs = append(c.descs, prometheus.NewDesc(metricPrefix+m.name, m.help, nil, nil))
	}
	c.strays = prometheus.NewDesc(metricPrefix+straysName,
		"Datagrams dropped from quiet clients, by what they were.", []string{"reason"}, nil)
	c.runs = prometheus.NewDesc(metricPrefix+"program_runs_total",
		"Runs of each BPF program (counted while sysctl kernel.bpf_stats_enabled=1).", []string{"program"}, nil)
	c.run = prometheus.NewDesc(metricPrefix+"program_run_seconds_total",
		"Time spent in each BPF program (counted while sysctl kernel.bpf_stats_enabled=1).", []string{"program"}, nil)
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.strays
	ch <- c.runs
	ch <- c.run
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.g.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.strays, err)
		return
	}
	vals := s.Map()
	for i, m := range metrics {
		kind := prometheus.CounterValue
		if m.gauge {
			kind = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[i], kind, float64(vals[m.key]))
	}
	for i, v := range s.Strays {
		ch <- prometheus.MustNewConstMetric(c.strays, prometheus.CounterValue, float64(v), record.Reason(i).String())
	}
	in, out, err := c.g.ProgramStats()
	if err != nil {
		return
	}
	for _, p := range []struct {
		name string
		s    strayguard.ProgramStats
	}{{"ingress", in}, {"egress", out}} {
		ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(p.s.Runs), p.name)
		ch <- prometheus.MustNewConstMetric(c.run, prometheus.CounterValue, p.s.RunTime.Seconds(), p.name)
	}
}

// statsArgs is the stats line: every metric /metrics exports, under the
// same name, and the strays by reason.
func statsArgs(g *strayguard.Guard) []any {
	s, err := g.Stats()
	if err != nil {
		return []any{"err", err}
	}
	vals := s.Map()
	args := make([]any, 0, 2*len(metrics)+4)
	for _, m := range metrics {
		args = append(args, metricPrefix+m.name, vals[m.key])
	}
	return append(args, metricPrefix+straysName, s.TotalStrays(), "strays_by_reason", daemon.StraysByReason(&s.Strays))
}
