#!/usr/bin/env bash
# Run every fuzz target for a bounded time, one at a time.
#
#   fuzz/run.sh [seconds-per-target] [target...]
#
# Each target starts from a fresh copy of its committed seeds
# (fuzz/seeds/<target>/) plus the crash regressions (fuzz/regressions/<target>/)
# in fuzz/corpus/<target>/ (ignored by git; kept between runs so coverage
# accumulates), with -jobs=1 -max_len=65536. Prints executions and coverage
# per target from libFuzzer's final stats. Exits non-zero if any target
# leaves a crash, leak, timeout or out-of-memory artifact in
# fuzz/artifacts/<target>/, or if a regression input still fails.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and uses the stable
# toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags for
# sanitizers; no nightly toolchain is required).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(object_split signature approval policy hook_input refpattern)
fi
case "$secs" in ''|*[!0-9]*) echo "usage: $0 [seconds-per-target] [target...]" >&2; exit 2;; esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed. Install it with:" >&2
    echo "    cargo install cargo-fuzz --locked" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1

echo "building fuzz targets (release, AddressSanitizer)..."
if ! cargo fuzz build >build.log 2>&1; then
    tail -40 build.log >&2
    echo "build failed (full log: fuzz/build.log)" >&2
    exit 2
fi

mkdir -p logs
status=0
summary=()
for t in "${targets[@]}"; do
    corpus="corpus/$t"
    mkdir -p "$corpus" "artifacts/$t"
    cp -f seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    if [ -d "regressions/$t" ]; then
        cp -f regressions/"$t"/* "$corpus"/ 2>/dev/null || true
    fi
    before=$(find "artifacts/$t" -type f | wc -l)
    log="logs/$t.log"
    echo "== $t: ${secs}s"
    # -timeout: one input taking over 10 s is a bug (a hang) too.
    cargo fuzz run "$t" "$corpus" -- \
        -jobs=1 -workers=1 -max_len=65536 -max_total_time="$secs" \
        -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    # With -jobs=1 libFuzzer writes the run into fuzz-0.log.
    if [ -f fuzz-0.log ]; then cat fuzz-0.log >>"$log"; rm -f fuzz-0.log; fi
    after=$(find "artifacts/$t" -type f | wc -l)
    execs=$(grep -a 'stat::number_of_executed_units' "$log" | tail -1 | awk '{print $2}')
    speed=$(grep -a 'stat::average_exec_per_sec' "$log" | tail -1 | awk '{print $2}')
    line=$(grep -aE '^#[0-9]+.*(cov|ft):' "$log" | tail -1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$line")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$line")
    corp=$(sed -n 's/.*corp: \([0-9]*\/[^ ]*\).*/\1/p' <<<"$line")
    result=ok
    if [ "$after" -gt "$before" ] || [ "$rc" -ne 0 ]; then
        result="FAILED (exit $rc; see fuzz/$log and fuzz/artifacts/$t/)"
        status=1
    fi
    summary+=("$(printf '%-13s execs=%-10s exec/s=%-7s cov=%-6s ft=%-6s corpus=%-12s %s' \
        "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
    echo "${summary[-1]}"
done

echo
echo "summary (${secs}s per target):"
printf '  %s\n' "${summary[@]}"
exit $status
