#!/bin/sh
# run.sh runs the benchmark suite COUNT times (default 10), interleaved: each
# round runs every benchmark once, so the raw socket, the wrapper and pion
# meet the same machine noise, then prints benchstat tables. The raw results
# stay in $OUT (default benchmarks/results.txt) for later comparison.
#
#   benchmarks/run.sh                  # everything, 10 rounds
#   COUNT=3 BENCH=Loopback benchmarks/run.sh
set -eu
cd "$(dirname "$0")"
count=${COUNT:-10}
bench=${BENCH:-.}
out=${OUT:-results.txt}
benchstat=${BENCHSTAT:-go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da}

# Benchmarks whose sub-benchmarks have an impl key are compared column-wise,
# each against its own baseline: the raw socket (or zero-cost conn), pion's
# listener, conntrack.Table, or no relay at all.
loopback='.name:(LoopbackRead OR LoopbackBatch OR HotPath)'
demux='.name:Demux'
tables='.name:TableImpl'
relays='.name:(Relay OR GuardVeth)'
pion='.name:(Handshakes OR Echo)'

bin=$(mktemp -d)/benchmarks.test
go test -c -o "$bin" .
: >"$out"
i=0
while [ "$i" -lt "$count" ]; do
	i=$((i + 1))
	echo "round $i/$count" >&2
	"$bin" -test.run '^$' -test.bench "$bench" -test.benchmem -test.count 1 >>"$out"
done
rm -r "$(dirname "$bin")"

echo "## the wrapper against the raw socket (columns: impl; base: raw)"
$benchstat -col /impl -filter "$loopback" "$out"
echo
echo "## our demultiplexer against pion's udp.Listener (columns: impl; base: pion)"
$benchstat -col /impl -filter "$demux" "$out"
echo
echo "## conntrack.Table against the obvious alternatives (columns: impl; base: conntrack)"
$benchstat -col /impl -filter "$tables" "$out"
echo
echo "## strayrelay against no relay, a naive relay and nginx (columns: impl; base: direct)"
$benchstat -col /impl -filter "$relays" "$out"
echo
echo "## the pion adapters against pion's own listener, handshakes and echo (columns: impl; base: pion)"
$benchstat -col /impl -filter "$pion" "$out"
echo
echo "## decision cost, the table, what an association costs"
$benchstat -filter "-($loopback OR $demux OR $tables OR $relays OR $pion)" "$out"
