#!/bin/sh
# relay.sh is the relay load test: strayrelay, a naive Go relay and no relay
# at all, and nginx's UDP stream proxy (one worker) when nginx and its
# stream module are installed, side by side in COUNT interleaved rounds
# (default 5), with benchstat tables. On Debian:
#
#   apt-get install -y nginx libnginx-mod-stream
#   benchmarks/relay.sh
set -eu
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] || [ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]; then
	echo "nginx or its stream module is not installed: comparing without it" >&2
fi
BENCH='^BenchmarkRelay$' COUNT="${COUNT:-5}" OUT="${OUT:-relay-results.txt}" exec "$(dirname "$0")/run.sh"
