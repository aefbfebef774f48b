package main

import (
	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/cmd/internal/daemon"
)

const metricPrefix = "strayrelay_"

// metrics are the relay's counters and gauges; a counter added to the
// relay without a metric here fails TestMetricsCoverStats.
var metrics = []daemon.Metric{
	{Name: "associations", Key: "associations", Gauge: true, Help: "Associations now, of every state."},
	{Name: "unverified_associations", Key: "unverified", Gauge: true, Help: "Associations whose client has not yet proved its address (what forged ClientHellos can hold)."},
	{Name: "pending_associations", Key: "pending", Gauge: true, Help: "Associations of proved clients whose handshake has not completed."},
	{Name: "live_associations", Key: "live", Gauge: true, Help: "Associations whose handshake completed, closing ones included."},
	{Name: "closing_associations", Key: "closing", Gauge: true, Help: "Live associations whose client sent a closing alert."},
	{Name: "quiet_clients", Key: "quiet_peers", Gauge: true, Help: "Clients in their quiet period after the server closed their association."},
	{Name: "opened_total", Key: "opened", Help: "Associations opened, each on a fresh upstream socket."},
	{Name: "adopted_total", Key: "adopted", Help: "Associations a client's connection ID record opened (its association was lost, as in a cold restart), not a ClientHello."},
	{Name: "verified_total", Key: "verified", Help: "Clients that proved their address."},
	{Name: "server_closed_total", Key: "server_closed", Help: "Associations ended by the server's closing alert."},
	{Name: "idle_closed_total", Key: "idle_closed", Help: "Associations ended after the idle timeout."},
	{Name: "handshake_timeouts_total", Key: "handshake_timeouts", Help: "Proved handshakes that did not complete in time."},
	{Name: "client_aborted_total", Key: "client_aborted", Help: "Proved handshakes the client gave up with a fatal alert."},
	{Name: "unverified_timeouts_total", Key: "unverified_timeouts", Help: "Unverified associations that timed out."},
	{Name: "evicted_total", Key: "evicted", Help: "Unverified associations evicted at their cap."},
	{Name: "lingered_total", Key: "lingered", Help: "Associations ended after the client's closing alert and the close linger."},
	{Name: "reclaimed_total", Key: "reclaimed", Help: "Closing associations ended early to make room."},
	{Name: "rehandshakes_total", Key: "rehandshakes", Help: "Handshakes a client started from the addr:port of a live association (RFC 6347 4.2.8)."},
	{Name: "replaced_total", Key: "replaced", Help: "Live associations ended because the client's new handshake completed."},
	{Name: "refused_total", Key: "refused", Help: "Cookie echoes refused at the cap on associations."},
	{Name: "dial_errors_total", Key: "dial_errors", Help: "ClientHellos for which no upstream socket could be opened."},
	{Name: "from_clients_total", Key: "from_clients", Help: "Datagrams read from clients."},
	{Name: "to_server_total", Key: "to_server", Help: "Datagrams forwarded to the server."},
	{Name: "to_client_total", Key: "to_client", Help: "Datagrams forwarded to clients."},
	{Name: "dropped_unknown_total", Key: "dropped_unknown", Help: "Datagrams no association took from clients that are not quiet."},
	{Name: "dropped_invalid_total", Key: "dropped_invalid", Help: "Epoch-0 alerts and application data sent to a completed association (RFC 6347 4.1.2.7)."},
	{Name: "write_errors_total", Key: "write_errors", Help: "Datagrams a socket refused to send."},
	{Name: "upstream_errors_total", Key: "upstream_errors", Help: "ICMP reports that the upstream refused a datagram or is unreachable."},
	{Name: "echoes_total", Key: "echoes", Help: "Closing alerts sent again to quiet clients that kept sending."},
	{Name: "quiet_evictions_total", Key: "quiet_evictions", Help: "Quiet clients evicted at the cap before their quiet period ended."},
}

// newExporter exports r's counters (/metrics and the stats line).
func newExporter(r *relay.Relay) *daemon.Exporter {
	return daemon.NewExporter(metricPrefix, metrics,
		"Datagrams dropped from quiet clients that no association took, by what they were.",
		func() (daemon.Counters, error) {
			s := r.Stats()
			return daemon.Counters{Values: s.Map(), Strays: s.Strays}, nil
		})
}
