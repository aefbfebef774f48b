package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/straydtls/straydtls/cmd/internal/daemon"
	"github.com/straydtls/straydtls/strayguard"
)

// The names strayrelay also has (quiet_clients, strays_total) mean the same.
const metricPrefix = "strayguard_"

// metrics are the guard's counters and gauges; a counter added to
// strayguard.Stats without a metric here fails TestMetricsCoverStats.
var metrics = []daemon.Metric{
	{Name: "quiet_clients", Key: "quiet_clients", Gauge: true, Help: "Clients in their quiet period after the server's closing alert (expired ones not yet removed included)."},
	{Name: "closing_alerts_total", Key: "closing_alerts", Help: "The server's datagrams carrying a closing alert, each starting or restarting a client's quiet period."},
	{Name: "server_hellos_total", Key: "server_hellos", Help: "Quiet periods ended early by the server's ServerHello to the client."},
	{Name: "expired_total", Key: "expired", Help: "Quiet periods found over and removed."},
	{Name: "hellos_total", Key: "hellos", Help: "ClientHellos let through from quiet clients."},
	{Name: "foreign_total", Key: "foreign", Help: "Datagrams of other protocols let through from quiet clients."},
}

// newExporter exports g's counters (/metrics and the stats line).
func newExporter(g *strayguard.Guard) *daemon.Exporter {
	return daemon.NewExporter(metricPrefix, metrics, "Datagrams dropped from quiet clients, by what they were.",
		func() (daemon.Counters, error) {
			s, err := g.Stats()
			return daemon.Counters{Values: s.Map(), Strays: s.Strays}, err
		})
}

// programCollector exports the programs' run time, which the kernel counts
// only while sysctl kernel.bpf_stats_enabled is 1.
type programCollector struct {
	g         *strayguard.Guard
	runs, run *prometheus.Desc
}

func newProgramCollector(g *strayguard.Guard) *programCollector {
	return &programCollector{g: g,
		runs: prometheus.NewDesc(metricPrefix+"program_runs_total",
			"Runs of each BPF program (counted while sysctl kernel.bpf_stats_enabled=1).", []string{"program"}, nil),
		run: prometheus.NewDesc(metricPrefix+"program_run_seconds_total",
			"Time spent in each BPF program (counted while sysctl kernel.bpf_stats_enabled=1).", []string{"program"}, nil),
	}
}

func (c *programCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.runs
	ch <- c.run
}

func (c *programCollector) Collect(ch chan<- prometheus.Metric) {
	in, out, err := c.g.ProgramStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.runs, err)
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
