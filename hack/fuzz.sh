#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time each. New
# interesting inputs are minimized for at most 50 runs: the default (60 s
# each) would spend the whole budget minimizing instead of fuzzing.
#
# Go's fuzzing engine can end a run that found nothing with "context
# deadline exceeded" when fuzztime runs out while a worker is busy (a
# minimization, a slow input). Such a run wrote no failing input
# ("Failing input written to"); it is run once more. A run that found a
# failure always fails.
set -euo pipefail
fuzztime="${1:-10s}"
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		for attempt in 1 2; do
			echo "fuzz $pkg $target for $fuzztime"
			if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 50x "$pkg" 2>&1); then
				echo "$out" | tail -n 2
				break
			fi
			echo "$out"
			if [ "$attempt" = 2 ] || ! grep -q 'context deadline exceeded' <<<"$out" || grep -q 'Failing input written to' <<<"$out"; then
				exit 1
			fi
			echo "fuzz $pkg $target: the engine ran out of time with no failing input; once more"
		done
	done
done
