package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/cmd/internal/daemon"
	"github.com/straydtls/straydtls/record"
)

// metric is one of the relay's counters or gauges, as /metrics exports it
// and the stats line names it. key is its name in relay.Stats.Map, so both
// read the same number and a counter added to the relay without a metric
// here fails TestMetricsCoverStats.
type metric struct {
	name  string // without the strayrelay_ prefix; counters end in _total
	key   string
	gauge bool
	help  string
}

const metricPrefix = "strayrelay_"

var metrics = []metric{
	{"associations", "associations", true, "Associations now, of every state."},
	{"unverified_associations", "unverified", true, "Associations whose client has not yet proved its address (what forged ClientHellos can hold)."},
	{"pending_associations", "pending", true, "Associations of proved clients whose handshake has not completed."},
	{"live_associations", "live", true, "Associations whose handshake completed, closing ones included."},
	{"closing_associations", "closing", true, "Live associations whose client sent a closing alert."},
	{"quiet_clients", "quiet_peers", true, "Clients in their quiet period after the server closed their association."},
	{"opened_total", "opened", false, "Associations opened, each on a fresh upstream socket."},
	{"verified_total", "verified", false, "Clients that proved their address."},
	{"server_closed_total", "server_closed", false, "Associations ended by the server's closing alert."},
	{"idle_closed_total", "idle_closed", false, "Associations ended after the idle timeout."},
	{"handshake_timeouts_total", "handshake_timeouts", false, "Proved handshakes that did not complete in time."},
	{"client_aborted_total", "client_aborted", false, "Proved handshakes the client gave up with a fatal alert."},
	{"unverified_timeouts_total", "unverified_timeouts", false, "Unverified associations that timed out."},
	{"evicted_total", "evicted", false, "Unverified associations evicted at their cap."},
	{"lingered_total", "lingered", false, "Associations ended after the client's closing alert and the close linger."},
	{"reclaimed_total", "reclaimed", false, "Closing associations ended early to make room."},
	{"rehandshakes_total", "rehandshakes", false, "Handshakes a client started from the addr:port of a live association (RFC 6347 4.2.8)."},
	{"replaced_total", "replaced", false, "Live associations ended because the client's new handshake completed."},
	{"refused_total", "refused", false, "Cookie echoes refused at the cap on associations."},
	{"dial_errors_total", "dial_errors", false, "ClientHellos for which no upstream socket could be opened."},
	{"from_clients_total", "from_clients", false, "Datagrams read from clients."},
	{"to_server_total", "to_server", false, "Datagrams forwarded to the server."},
	{"to_client_total", "to_client", false, "Datagrams forwarded to clients."},
	{"dropped_unknown_total", "dropped_unknown", false, "Datagrams no association took from clients that are not quiet."},
	{"dropped_invalid_total", "dropped_invalid", false, "Epoch-0 alerts and application data sent to a completed association (RFC 6347 4.1.2.7)."},
	{"write_errors_total", "write_errors", false, "Datagrams a socket refused to send."},
	{"upstream_errors_total", "upstream_errors", false, "ICMP reports that the upstream refused a datagram or is unreachable."},
	{"echoes_total", "echoes", false, "Closing alerts sent again to quiet clients that kept sending."},
	{"quiet_evictions_total", "quiet_evictions", false, "Quiet clients evicted at the cap before their quiet period ended."},
}

// strays is exported with a reason label; the stats line gives the total
// and the reasons.
const straysName = "strays_total"

// collector exports a relay's counters at each scrape, read from one
// Stats snapshot: nothing is kept between scrapes.
type collector struct {
	r      *relay.Relay
	descs  []*prometheus.Desc
	strays *prometheus.Desc
}

func newCollector(r *relay.Relay) *collector {
	c := &collector{r: r}
	for _, m := range metrics {
		c.descs = append(c.descs, prometheus.NewDesc(metricPrefix+m.name, m.help, nil, nil))
	}
	c.strays = prometheus.NewDesc(metricPrefix+straysName,
		"Datagrams dropped from quiet clients that no association took, by what they were.", []string{"reason"}, nil)
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.strays
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
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
}

// statsArgs is the stats line: every metric /metrics exports, under the
// same name, and the strays by reason.
func statsArgs(s relay.Stats) []any {
	vals := s.Map()
	args := make([]any, 0, 2*len(metrics)+4)
	for _, m := range metrics {
		args = append(args, metricPrefix+m.name, vals[m.key])
	}
	return append(args, metricPrefix+straysName, s.TotalStrays(), "strays_by_reason", daemon.StraysByReason(&s.Strays))
}
