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
benchstat=${BENCHSTAT:-go run golang.org/x/perf/cmd/benchstat@latest}

# The benchmarks whose sub-benchmarks have an impl key, compared column-wise.
compared='.name:(LoopbackRead OR LoopbackBatch OR Demux)'

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

echo "## the wrapper and our demultiplexer against the raw socket and pion (columns: impl)"
$benchstat -col /impl -filter "$compared" "$out"
echo
echo "## decision cost and the table"
$benchstat -filter "-$compared" "$out"
