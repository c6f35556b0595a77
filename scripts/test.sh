#!/usr/bin/env bash
# THE test command of the project (README, CI): builds everything, runs every test (unit, integration and
# the interop suite that drives the real mqnamesrv/mqbroker binaries with the crates.io RocketMQ client),
# then the deterministic simulation sweep (scripts/sim.sh) when it exists. Stops at the first failing step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

locked=()
if [[ "${CI:-}" == "true" ]]; then
    locked=(--locked) # CI must build exactly what Cargo.lock says
fi

declare -a summary=()
current=""
step_start=0
suite_start=$(date +%s)

finish() {
    local rc=$?
    if [[ -n "$current" ]]; then
        summary+=("FAILED  ${current} ($(($(date +%s) - step_start))s)")
        [[ $rc -eq 0 ]] && rc=1 # interrupted mid-step (signal): never report success
    fi
    echo
    echo "==================== scripts/test.sh summary ===================="
    for line in "${summary[@]}"; do
        echo "  $line"
    done
    if [[ $rc -eq 0 ]]; then
        echo "  ALL STEPS PASSED in $(($(date +%s) - suite_start))s"
    else
        echo "  FAILED (exit $rc) after $(($(date +%s) - suite_start))s"
    fi
    echo "================================================================="
}
trap finish EXIT

run_step() {
    local name=$1
    shift
    current=$name
    step_start=$(date +%s)
    echo
    echo "==> [$name] $*"
    "$@"
    summary+=("ok      ${name} ($(($(date +%s) - step_start))s)")
    current=""
}

run_step "build" cargo build --workspace --all-targets "${locked[@]}"
run_step "test" cargo test --workspace "${locked[@]}"
if [[ -f scripts/sim.sh ]]; then
    run_step "simulation" bash scripts/sim.sh
else
    summary+=("skipped simulation (scripts/sim.sh not present)")
fi
