#!/usr/bin/env bash
# Deterministic simulation sweep (madsim). Builds the simulation tests ONCE, then runs one
# process per (scenario, seed) in parallel — one process per seed because tokio's select! RNG
# and other statics are process-global and would leak between simulations in one process.
#
# Usage:
#   scripts/sim.sh                         # sweep: every scenario x SIM_SEEDS + regression seeds
#                                          #        + determinism checks on SIM_DETERMINISM_SEEDS
#   scripts/sim.sh --replay-check T SEED   # run T with SEED twice in two processes, compare the
#                                          # trace digests, plus madsim's own determinism check
#   scripts/sim.sh --list                  # print the scenarios found
#
# Environment:
#   SIM_SEEDS="1..64"            seed range (a..b) or a list ("3 17 40")
#   SIM_SCENARIOS="t10_send_pull t20_crash_sync_flush"   default: every sim-tests/t*.rs [[test]]
#   SIM_ONCE_PATTERN="^t9"       scenarios that sweep their own seed range internally (checker
#                                tests): run once with seed 1 instead of once per seed
#   SIM_DETERMINISM_SEEDS="1 2"  seeds run with MADSIM_TEST_CHECK_DETERMINISM=1 and twice to
#                                compare digests across processes
#   SIM_JOBS=$(nproc)            parallel processes
#   SIM_TIMEOUT_S=300            wall-clock limit per process (a hang is a failure)
#   SIM_CARGO_FLAGS="--release"  build flags (release: ~10x faster runs; debug_assert!s are off, so
#                                replay a failing seed without it to get them back)
#   SIM_OUT=target/sim-sweep     where logs go
# Exit status: 0 if every run passed, 1 otherwise (failing seeds are listed with the commit and
# the exact replay command).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SIM_SEEDS=${SIM_SEEDS:-1..64}
SIM_ONCE_PATTERN=${SIM_ONCE_PATTERN:-^t9}
SIM_DETERMINISM_SEEDS=${SIM_DETERMINISM_SEEDS-1 2}
SIM_JOBS=${SIM_JOBS:-$(nproc)}
SIM_TIMEOUT_S=${SIM_TIMEOUT_S:-300}
SIM_CARGO_FLAGS=${SIM_CARGO_FLAGS---release}
if [[ "${CI:-}" == "true" ]]; then
  SIM_CARGO_FLAGS="$SIM_CARGO_FLAGS --locked" # CI builds exactly what Cargo.lock says
fi
SIM_OUT=${SIM_OUT:-$ROOT/target/sim-sweep}
REGRESSION_FILE=$ROOT/sim-tests/regression-seeds.txt
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD 2>/dev/null; then COMMIT="$COMMIT+dirty"; fi

# Every [[test]] whose path is sim-tests/t*.rs, in Cargo.toml order.
all_scenarios() {
  awk '/^\[\[test\]\]/{name=""} /^name *=/{gsub(/[" ]/,"",$0); sub(/name=/,"",$0); name=$0}
       /^path *= *"sim-tests\/t/{print name}' Cargo.toml
}

expand_seeds() {
  local spec=$1
  if [[ $spec =~ ^([0-9]+)\.\.([0-9]+)$ ]]; then
    seq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
  else
    tr ' ,' '\n\n' <<<"$spec" | grep -E '^[0-9]+$' || true
  fi
}

SCENARIOS=${SIM_SCENARIOS:-$(all_scenarios | tr '\n' ' ')}
if [[ ${1:-} == --list ]]; then
  for s in $SCENARIOS; do echo "$s"; done
  exit 0
fi

# ---- build once ---------------------------------------------------------------------------
mkdir -p "$SIM_OUT"
BINS=$SIM_OUT/binaries.txt
build_start=$(date +%s)
test_args=()
for s in $SCENARIOS; do test_args+=(--test "$s"); done
echo "== building $(( ${#test_args[@]} / 2 )) simulation binaries (cargo sim --no-run $SIM_CARGO_FLAGS)"
# shellcheck disable=SC2086
cargo sim --no-run $SIM_CARGO_FLAGS "${test_args[@]}" --message-format=json 2>"$SIM_OUT/build.log" |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])
' >"$BINS" || { tail -40 "$SIM_OUT/build.log"; echo "build failed"; exit 1; }
echo "== built in $(( $(date +%s) - build_start ))s"

bin_of() { awk -v n="$1" '$1==n{print $2}' "$BINS"; }
for s in $SCENARIOS; do
  [[ -n $(bin_of "$s") ]] || { echo "no binary for scenario $s (is it a [[test]] in Cargo.toml?)"; exit 1; }
done

# ---- one process per (scenario, seed) -----------------------------------------------------
# A job line: "<scenario> <seed> <mode>" with mode run | check | replay.
run_job() {
  local scenario=$1 seed=$2 mode=$3 bin log start end rc
  bin=$(awk -v n="$scenario" '$1==n{print $2}' "$BINS")
  log="$SIM_OUT/logs/$scenario.$seed.$mode.log"
  start=$(date +%s.%N)
  rc=0
  local check_env=()
  [[ $mode == check ]] && check_env=(MADSIM_TEST_CHECK_DETERMINISM=1)
  # CPU seconds (user+sys) next to wall seconds: on a loaded machine wall time mostly measures
  # waiting for a core.
  local TIMEFORMAT='%U %S'
  { time env MADSIM_TEST_SEED="$seed" "${check_env[@]}" timeout "$SIM_TIMEOUT_S" \
      "$bin" --nocapture --test-threads=1 >"$log" 2>&1 || rc=$?; } 2>"$log.cpu"
  cpu=$(awk '{printf "%.3f", $1+$2}' "$log.cpu")
  end=$(date +%s.%N)
  digest=$(grep -o 'digest=[0-9a-f]*' "$log" | tail -1 | cut -d= -f2 || true)
  simsecs=$(grep -o 'sim_secs=[0-9.]*' "$log" | awk -F= '{s+=$2} END{print s+0}')
  echo "$scenario $seed $mode $rc $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.3f", b-a}') ${digest:-none} $simsecs $cpu" \
    >>"$SIM_OUT/results.txt"
}
export -f run_job
export SIM_OUT BINS SIM_TIMEOUT_S

replay_cmd() { echo "MADSIM_TEST_SEED=$2 cargo sim ${SIM_CARGO_FLAGS:+$SIM_CARGO_FLAGS }--test $1 -- --nocapture"; }

if [[ ${1:-} == --replay-check ]]; then
  scenario=${2:?scenario}; seed=${3:?seed}
  rm -rf "$SIM_OUT/logs" "$SIM_OUT/results.txt"; mkdir -p "$SIM_OUT/logs"
  run_job "$scenario" "$seed" run
  cp "$SIM_OUT/logs/$scenario.$seed.run.log" "$SIM_OUT/logs/$scenario.$seed.first.log"
  run_job "$scenario" "$seed" replay
  run_job "$scenario" "$seed" check
  cat "$SIM_OUT/results.txt"
  d1=$(awk '$3=="run"{print $6}' "$SIM_OUT/results.txt")
  d2=$(awk '$3=="replay"{print $6}' "$SIM_OUT/results.txt")
  bad=$(awk '$4!=0' "$SIM_OUT/results.txt")
  if [[ -n $bad ]]; then
    echo "FAIL: a run failed; logs in $SIM_OUT/logs"; exit 1
  fi
  if [[ $d1 == none || $d1 != "$d2" ]]; then
    echo "FAIL: $scenario seed $seed digests differ across processes: $d1 vs $d2"; exit 1
  fi
  echo "OK: $scenario seed $seed replays identically (digest $d1) and passes madsim's determinism check"
  exit 0
fi

rm -rf "$SIM_OUT/logs" "$SIM_OUT/results.txt"
mkdir -p "$SIM_OUT/logs"
JOBS=$SIM_OUT/jobs.txt
: >"$JOBS"
for s in $SCENARIOS; do
  if [[ $s =~ $SIM_ONCE_PATTERN ]]; then
    echo "$s 1 run" >>"$JOBS"
    continue
  fi
  for seed in $(expand_seeds "$SIM_SEEDS"); do echo "$s $seed run" >>"$JOBS"; done
  for seed in $SIM_DETERMINISM_SEEDS; do
    echo "$s $seed check" >>"$JOBS"
    echo "$s $seed replay" >>"$JOBS"
  done
done
if [[ -f $REGRESSION_FILE ]]; then
  # Lines: "<scenario> <seed> [# why]"; scenarios not in this sweep are skipped.
  while read -r s seed _; do
    [[ -z ${s:-} || $s == \#* ]] && continue
    [[ " $SCENARIOS " == *" $s "* ]] || continue
    echo "$s $seed run" >>"$JOBS"
  done <"$REGRESSION_FILE"
fi
# Regression seeds may repeat a sweep seed; run each (scenario, seed, mode) once.
sort -u -o "$JOBS" "$JOBS"
njobs=$(wc -l <"$JOBS")
echo "== running $njobs simulations on $SIM_JOBS processes (commit $COMMIT)"
sweep_start=$(date +%s.%N)
xargs -P "$SIM_JOBS" -L 1 bash -c 'run_job "$@"' _ <"$JOBS"
sweep_end=$(date +%s.%N)
elapsed=$(awk -v a="$sweep_start" -v b="$sweep_end" 'BEGIN{printf "%.1f", b-a}')

# ---- report -------------------------------------------------------------------------------
echo
echo "== per scenario (per process: wall and CPU seconds; seeds/min and simulated seconds per"
echo "   second, on one core, by wall time and by CPU time)"
awk '{
  n[$1]++; t[$1]+=$5; sim[$1]+=$7; cpu[$1]+=$8; if ($4!=0) f[$1]++
} END {
  for (s in n) printf "  %-26s runs=%-4d failed=%-3d wall=%6.1fs cpu=%6.1fs seeds/min=%6.1f (cpu %6.1f) sim/wall=%5.0f sim/cpu=%5.0f\n",
    s, n[s], f[s]+0, t[s], cpu[s], (t[s]>0 ? 60*n[s]/t[s] : 0), (cpu[s]>0 ? 60*n[s]/cpu[s] : 0),
    (t[s]>0 ? sim[s]/t[s] : 0), (cpu[s]>0 ? sim[s]/cpu[s] : 0)
}' "$SIM_OUT/results.txt" | sort

status=0
# Replays must reproduce the digest of the plain run with the same seed, in another process.
while read -r s seed _ rc _ digest _; do
  first=$(awk -v s="$s" -v d="$seed" '$1==s && $2==d && $3=="run"{print $6}' "$SIM_OUT/results.txt")
  if [[ -n $first && $rc == 0 && $first != "$digest" ]]; then
    echo "NONDETERMINISM $s seed $seed: digest $first then $digest in another process"
    echo "  commit $COMMIT; check: scripts/sim.sh --replay-check $s $seed"
    status=1
  fi
done < <(awk '$3=="replay"' "$SIM_OUT/results.txt")

failures=$(awk '$4!=0' "$SIM_OUT/results.txt" | sort -k1,1 -k2,2n)
if [[ -n $failures ]]; then
  status=1
  echo
  echo "== FAILURES (commit $COMMIT)"
  while read -r s seed mode rc _; do
    log="$SIM_OUT/logs/$s.$seed.$mode.log"
    what="failed (exit $rc)"
    [[ $rc == 124 ]] && what="timed out after ${SIM_TIMEOUT_S}s wall"
    echo "FAIL $s seed=$seed mode=$mode $what; log: $log"
    if [[ $mode == check ]]; then
      echo "  replay: MADSIM_TEST_CHECK_DETERMINISM=1 $(replay_cmd "$s" "$seed")"
    else
      echo "  replay: $(replay_cmd "$s" "$seed")"
    fi
    grep -E "panicked|violation|\[[a-z_]+\] " "$log" | head -8 | sed 's/^/    /' || true
  done <<<"$failures"
fi
total=$(wc -l <"$SIM_OUT/results.txt")
nfail=$(awk '$4!=0' "$SIM_OUT/results.txt" | wc -l)
echo
echo "== $total simulations, $nfail failed, ${elapsed}s wall on $SIM_JOBS processes" \
  "($(awk -v n="$total" -v e="$elapsed" 'BEGIN{printf "%.0f", (e>0?60*n/e:0)}') seeds/min overall), commit $COMMIT"
exit $status
