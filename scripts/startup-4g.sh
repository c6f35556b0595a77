#!/usr/bin/env bash
# Broker start-up after an abnormal exit on a large store: fills a standalone mqbroker's store
# with STARTUP_GB GiB of CommitLog (mqbench producer, 4 KiB bodies), kills the broker with
# SIGKILL (abort file left behind, page cache intact: a process crash), then restarts it and
# times spawn -> first accepted send (mqbench startup: topic creation + one send), i.e.
# abnormal recovery + broker start. Prints the figure and the broker's recovery log lines.
#
# Usage: cargo build --release --bins && scripts/startup-4g.sh
# Environment: BIN (target/release), STARTUP_GB (4), WORK (target/startup-4g; removed at the
# end), BP (31911: broker port; the broker also binds BP-2 and BP+1), NSP (BP+100: its embedded
# name server).
# Needs: jq, ~STARTUP_GB + 1 GiB free on the volume of WORK.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
STARTUP_GB=${STARTUP_GB:-4}
WORK=${WORK:-$(pwd)/target/startup-4g}
BP=${BP:-31911}
NSP=${NSP:-$((BP + 100))}
NS=127.0.0.1:$NSP
for b in mqbroker mqbench; do
    [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b (cargo build --release --bins)" >&2; exit 1; }
done
command -v jq > /dev/null || { echo "needs jq" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/store"
# The shared volume runs nearly full: keep the disk-full guard and forced cleanup out.
printf 'flushDiskType=ASYNC_FLUSH\ndiskSpaceWarningLevelRatio=0.999\ncleanFileForciblyEnable=false\n' \
    > "$WORK/broker.conf"
broker_cmd=("$BIN/mqbroker" --standalone -c "$WORK/broker.conf" --store "$WORK/store"
    --namesrv-port "$NSP" --port "$BP")

BROKER_PID=""
cleanup() {
    [[ -n "$BROKER_PID" ]] && kill -9 "$BROKER_PID" 2> /dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_gone() { for _ in $(seq 100); do [[ -e /proc/$1 ]] || return 0; sleep 0.1; done; return 1; }

target=$((STARTUP_GB * 1024 * 1024 * 1024))

echo "== filling ${STARTUP_GB} GiB (4 KiB bodies, ASYNC_FLUSH)"
"$BIN/mqbench" startup -n "$NS" --keep --json -- "${broker_cmd[@]}" > "$WORK/start-fill.json"
BROKER_PID=$(jq -r .pid "$WORK/start-fill.json")
per_msg=$((4096 + 200))
count=$((target / per_msg + 1000))
max_offset() {
    "$BIN/mqadmin" brokerStatus -n "$NS" -b "127.0.0.1:$BP" 2> /dev/null |
        grep -m1 commitLogMaxOffset | grep -o '[0-9][0-9]*' | tail -1
}
sent=0
while :; do
    "$BIN/mqbench" producer -n "$NS" -t StartupFill -w 32 -s 4096 --count "$count" --retries 2 \
        --quiet --json > "$WORK/fill.json"
    sent=$((sent + $(jq -r .sent_ok "$WORK/fill.json")))
    max=$(max_offset); max=${max:-0}
    (( max >= target )) && break
    # Entries are smaller than guessed (or sends failed): top up by what is missing.
    count=$(( (target - max) / per_msg + 1000 ))
done
echo "filled: $sent messages sent OK; commitLogMaxOffset $max ($(ls "$WORK/store/commitlog" | wc -l) CommitLog files)"

echo "== kill -9 the broker (pid $BROKER_PID)"
kill -9 "$BROKER_PID"
wait_gone "$BROKER_PID" || { echo "broker did not die" >&2; exit 1; }
BROKER_PID=""
[[ -e "$WORK/store/abort" ]] || { echo "no abort file after kill -9" >&2; exit 1; }

echo "== restart: spawn -> first accepted send"
"$BIN/mqbench" startup -n "$NS" --keep --json --timeout-secs 120 -- "${broker_cmd[@]}" \
    > "$WORK/restart.json" 2> "$WORK/restart.err"
BROKER_PID=$(jq -r .pid "$WORK/restart.json")
first=$(jq -r .first_send_ms "$WORK/restart.json")
echo "startup-4g: ${STARTUP_GB} GiB store after kill -9: first accepted send after ${first} ms" \
    "(topic created after $(jq -r .topic_created_ms "$WORK/restart.json") ms)"
grep -h "recovery done" "$WORK/restart.err" | sed 's/\x1b\[[0-9;]*m//g' || true
kill "$BROKER_PID" 2> /dev/null || true
wait_gone "$BROKER_PID" || true
BROKER_PID=""
