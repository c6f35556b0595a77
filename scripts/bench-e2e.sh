#!/usr/bin/env bash
# End-to-end figures for notes/bench-results.md (README table): mqbench against
# `mqbroker --standalone` on loopback, release build.
#
#   scripts/bench-e2e.sh                 # full table, ~10 s per cell (DUR), JSON + table in $OUT
#   DUR=5 SIZES="1024" CONC="16" scripts/bench-e2e.sh   # a quick subset
#
# Every cell: a producer run of DUR seconds on its own topic (8 queues), then a consumer that
# reads that backlog from the first offset (catch-up read) and must receive exactly what was
# sent. The machine is shared: compare figures within one run (ratios), not across runs.
# Then master + slave rows: ASYNC_MASTER and SYNC_MASTER (HA_ROLES; HA_ROLES="" skips), sizes
# HA_SIZES (1024), senders HA_CONC (1 16 64). SPLIT=0 skips the separate namesrv/broker section.
# Store vs end to end (issue 6: produce within 2x of the store's own append): in the ASYNC_FLUSH
# section each size also gets a batch cell (BATCH_SIZE messages per request, BATCH_CONC senders;
# BATCH_SIZE=1 skips), and after that broker stops `mqbench store-append` appends STORE_MB MiB
# of the same messages straight into a MessageStore; the table prints the ratios.
# Every cell also records the broker's CPU time per sent message (/proc/<pid>/stat).
# Needs: jq, awk, Linux /proc (VmRSS/RssAnon). Ports NSP (29876) and BP (30911, BP-2, BP+1;
# the slave uses BP+10, BP+8, BP+11).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release}
DUR=${DUR:-10}
SIZES=${SIZES:-"128 1024"}
CONC=${CONC:-"1 16 64"}
# SYNC_FLUSH_WARM = SYNC_FLUSH with warmMapedFileEnable=true (zeros written and synced ahead of
# the CommitLog's writer).
FLUSHES=${FLUSHES:-"ASYNC_FLUSH SYNC_FLUSH SYNC_FLUSH_WARM"}
# SYNC_FLUSH (and SYNC_FLUSH_WARM) run only this size (the flush cost is per request, not per
# byte).
SYNC_SIZES=${SYNC_SIZES:-"1024"}
BATCH_SIZE=${BATCH_SIZE:-64}
BATCH_CONC=${BATCH_CONC:-4}
STORE_MB=${STORE_MB:-256}
NSP=${NSP:-29876}
BP=${BP:-30911}
NS=127.0.0.1:$NSP
OUT=${OUT:-$(mktemp -d /tmp/apogee-bench.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/apogee-bench-store.XXXXXX)

if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release --bins >&2
fi

BROKER_PID=""
cleanup() {
    if [[ -n "$BROKER_PID" ]]; then stop_pid "$BROKER_PID"; fi
    if [[ -n "${NAMESRV_PID:-}" ]]; then kill "$NAMESRV_PID" 2>/dev/null || true; fi
    if [[ -n "${SLAVE_PID:-}" ]]; then kill "$SLAVE_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# VmRSS counts the mapped CommitLog/ConsumeQueue pages the process touched (file-backed, the
# page cache); RssAnon is the process's own heap and stacks. Both are reported.
# utime + stime of $1 in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)

rss_kib() { awk -v k="${2:-VmRSS}:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Samples VmRSS and RssAnon of $1 every 200 ms until the file $3 exists; writes the maxima
# to $2 and $2.anon.
sample_rss() {
    local pid=$1 out=$2 stopfile=$3 max=0 amax=0 v a
    while [[ ! -e "$stopfile" ]]; do
        v=$(rss_kib "$pid"); v=${v:-0}; (( v > max )) && max=$v
        a=$(rss_kib "$pid" RssAnon); a=${a:-0}; (( a > amax )) && amax=$a
        sleep 0.2
    done
    echo "$max" > "$out"
    echo "$amax" > "$out.anon"
}

# Starts a standalone broker on an empty store with flushDiskType=$1; measures the time to
# the first accepted send (mqbench startup) and records idle RSS.
start_broker() {
    local flush=$1 store="$WORK/store-$1"
    mkdir -p "$store"
    # The shared disk runs near 93% full: above the 90% warning level sends are rejected and
    # above 85% CommitLog files are deleted forcibly (even mid-run). Turn both off.
    local warm=false flush_disk_type=$flush
    if [[ $flush == SYNC_FLUSH_WARM ]]; then warm=true flush_disk_type=SYNC_FLUSH; fi
    printf 'flushDiskType=%s\nwarmMapedFileEnable=%s\ndiskSpaceWarningLevelRatio=0.99\ncleanFileForciblyEnable=false\n' \
        "$flush_disk_type" "$warm" > "$WORK/broker-$flush.conf"
    "$BIN/mqbench" startup -n "$NS" --keep --json -- \
        "$BIN/mqbroker" --standalone -c "$WORK/broker-$flush.conf" --store "$store" \
        --namesrv-port "$NSP" --port "$BP" > "$OUT/startup-$flush.json"
    BROKER_PID=$(jq -r .pid "$OUT/startup-$flush.json")
    sleep 2
    echo "$(rss_kib "$BROKER_PID")" > "$OUT/idle-rss-$flush.kib"
    echo "$(rss_kib "$BROKER_PID" RssAnon)" > "$OUT/idle-rss-$flush.kib.anon"
}

# The broker is not our child (mqbench startup spawned it), so `wait` cannot reap it: poll.
stop_pid() {
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do [[ -e /proc/$1 ]] || return 0; sleep 0.1; done
    echo "pid $1 did not exit within 10 s" >&2
}

stop_broker() {
    stop_pid "$BROKER_PID"; BROKER_PID=""
    rm -rf "$WORK"/store-* "$WORK/split/store"
}

# produce_consume FLUSH SIZE CONC [extra producer flags...]
produce_consume() {
    local flush=$1 size=$2 conc=$3; shift 3
    # LABEL (env) replaces the flush column for special rows (paced, split processes).
    local tag="${LABEL:-$flush}-$size-$conc"
    local topic="Bench_${tag//-/_}"
    echo "== $tag" >&2
    local stopfile="$OUT/.stop-$tag"; rm -f "$stopfile"
    sample_rss "$BROKER_PID" "$OUT/load-rss-$tag.kib" "$stopfile" &
    local sampler=$!
    local cpu0 cpu1
    cpu0=$(cpu_ticks "$BROKER_PID")
    "$BIN/mqbench" producer -n "$NS" -t "$topic" -w "$conc" -s "$size" --duration-secs "$DUR" \
        --retries 0 --json "$@" > "$OUT/produce-$tag.json" 2> "$OUT/produce-$tag.log"
    cpu1=$(cpu_ticks "$BROKER_PID")
    touch "$stopfile"; wait "$sampler"
    local sent run
    sent=$(jq -r .sent_ok "$OUT/produce-$tag.json")
    # Broker CPU (all its threads) per acknowledged message, microseconds.
    awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$sent" \
        'BEGIN { printf("%.1f\n", (n > 0) ? t / hz * 1e6 / n : 0) }' > "$OUT/broker-cpu-$tag.us"
    run=$(jq -r .run_id "$OUT/produce-$tag.json")
    # Catch-up read of the whole backlog, verified (exactly `sent` messages, no gap/duplicate).
    "$BIN/mqbench" consumer -n "$NS" -t "$topic" -g "cg_$topic" -w 1 --from first --verify \
        --expect "$sent" --run-id "$run" --duration-secs $((DUR * 3)) --json \
        > "$OUT/consume-$tag.json" 2> "$OUT/consume-$tag.log" || echo "consumer verify FAILED for $tag" >&2
}

for flush in $FLUSHES; do
    start_broker "$flush"
    sizes=$SIZES
    [[ $flush == SYNC_FLUSH* ]] && sizes=$SYNC_SIZES
    for size in $sizes; do
        for conc in $CONC; do
            produce_consume "$flush" "$size" "$conc"
        done
    done
    if [[ $flush == ASYNC_FLUSH ]]; then
        # Latency at ~50% of the peak send rate measured above, per size.
        for size in $sizes; do
            peak=0
            for conc in $CONC; do
                t=$(jq -r '.tps | floor' "$OUT/produce-$flush-$size-$conc.json")
                (( t > peak )) && peak=$t
            done
            half=$((peak / 2))
            echo "$peak" > "$OUT/peak-$size.tps"
            # mqbench's pacer thread schedules sends 1/rate apart and hands each to a free
            # sender. One sender may not reach the rate (latency from the scheduled time then
            # grows without bound); with 16 a latency spike can still occupy every sender,
            # with 64 the generator's own queueing is negligible.
            for conc in ${HALF_CONC:-1 16 64}; do
                LABEL=HALFPEAK produce_consume "$flush" "$size" "$conc" --tps "$half"
            done
            # The same load with the pacer waking once per PACE_TICK_US (default 100 us)
            # instead of once per request: its wake-ups compete with the broker for the
            # machine's two cores (see mqbench --pace-tick-us).
            if (( ${PACE_TICK_US:-100} > 0 )); then
                for conc in ${HALF_TICK_CONC:-16 64}; do
                    LABEL=HALFTICK produce_consume "$flush" "$size" "$conc" --tps "$half" \
                        --pace-tick-us "${PACE_TICK_US:-100}"
                done
            fi
        done
        if (( BATCH_SIZE > 1 )); then
            for size in $sizes; do
                LABEL=BATCH produce_consume "$flush" "$size" "$BATCH_CONC" -b "$BATCH_SIZE"
            done
        fi
    fi
    stop_broker
    if [[ $flush == ASYNC_FLUSH ]]; then
        # The store's own append rate for the same sizes, with no broker running.
        for size in $sizes; do
            "$BIN/mqbench" store-append --store "$WORK/store-append" -s "$size" --mb "$STORE_MB" \
                --json > "$OUT/store-append-$size.json"
        done
    fi
done

# Name server and broker as separate processes: idle RSS of each, and the broker under load
# (SPLIT=0 skips).
if [[ "${SPLIT:-1}" != 0 ]]; then
mkdir -p "$WORK/split"
printf 'listenPort=%s\n' "$NSP" > "$WORK/split/namesrv.conf"
"$BIN/mqnamesrv" -c "$WORK/split/namesrv.conf" > /dev/null &
NAMESRV_PID=$!
cat > "$WORK/split/broker.conf" <<EOF
brokerIP1=127.0.0.1
listenPort=$BP
namesrvAddr=$NS
storePathRootDir=$WORK/split/store
diskSpaceWarningLevelRatio=0.99
cleanFileForciblyEnable=false
EOF
"$BIN/mqbench" startup -n "$NS" --keep --json -- "$BIN/mqbroker" -c "$WORK/split/broker.conf" \
    > "$OUT/startup-split.json"
BROKER_PID=$(jq -r .pid "$OUT/startup-split.json")
sleep 2
echo "$(rss_kib "$NAMESRV_PID")" > "$OUT/idle-rss-namesrv.kib"
echo "$(rss_kib "$BROKER_PID")" > "$OUT/idle-rss-broker.kib"
echo "$(rss_kib "$NAMESRV_PID" RssAnon)" > "$OUT/idle-rss-namesrv.kib.anon"
echo "$(rss_kib "$BROKER_PID" RssAnon)" > "$OUT/idle-rss-broker.kib.anon"
stopfile="$OUT/.stop-ns"; rm -f "$stopfile"
sample_rss "$NAMESRV_PID" "$OUT/load-rss-namesrv.kib" "$stopfile" &
nsampler=$!
LABEL=SPLIT produce_consume ASYNC_FLUSH 1024 64
touch "$stopfile"; wait "$nsampler"
stop_broker
kill "$NAMESRV_PID"; wait "$NAMESRV_PID" 2>/dev/null || true; NAMESRV_PID=""
fi

# Replication: a master (ASYNC_MASTER, then SYNC_MASTER) and its slave as separate processes on
# loopback, sharing one name server; producer/consumer cells HA_SIZES x HA_CONC (HA_ROLES="" skips).
# SYNC_MASTER acknowledges a send only once the slave has acknowledged an offset covering it.
for role in ${HA_ROLES-ASYNC_MASTER SYNC_MASTER}; do
    mkdir -p "$WORK/ha"
    rm -rf "$WORK/ha/master" "$WORK/ha/slave"
    printf 'listenPort=%s\n' "$NSP" > "$WORK/ha/namesrv.conf"
    "$BIN/mqnamesrv" -c "$WORK/ha/namesrv.conf" > /dev/null &
    NAMESRV_PID=$!
    cat > "$WORK/ha/master.conf" <<EOF
brokerName=bench-ha
brokerId=0
brokerRole=$role
brokerIP1=127.0.0.1
listenPort=$BP
haListenPort=$((BP + 1))
namesrvAddr=$NS
storePathRootDir=$WORK/ha/master
diskSpaceWarningLevelRatio=0.99
cleanFileForciblyEnable=false
EOF
    cat > "$WORK/ha/slave.conf" <<EOF
brokerName=bench-ha
brokerId=1
brokerRole=SLAVE
brokerIP1=127.0.0.1
listenPort=$((BP + 10))
haListenPort=$((BP + 11))
haMasterAddress=127.0.0.1:$((BP + 1))
namesrvAddr=$NS
storePathRootDir=$WORK/ha/slave
diskSpaceWarningLevelRatio=0.99
cleanFileForciblyEnable=false
EOF
    "$BIN/mqbroker" -c "$WORK/ha/slave.conf" > "$OUT/ha-slave-$role.log" 2>&1 &
    SLAVE_PID=$!
    # A SYNC_MASTER refuses sends (SLAVE_NOT_AVAILABLE) until its slave has connected and caught
    # up: mqbench startup retries until the first send is accepted.
    "$BIN/mqbench" startup -n "$NS" --keep --json -- "$BIN/mqbroker" -c "$WORK/ha/master.conf" \
        > "$OUT/startup-$role.json"
    BROKER_PID=$(jq -r .pid "$OUT/startup-$role.json")
    sleep 1
    for size in ${HA_SIZES:-1024}; do
        for conc in ${HA_CONC:-1 16 64}; do
            LABEL=$role produce_consume ASYNC_FLUSH "$size" "$conc"
        done
    done
    echo "$(rss_kib "$SLAVE_PID")" > "$OUT/load-rss-slave-$role.kib"
    stop_pid "$BROKER_PID"; BROKER_PID=""
    kill "$SLAVE_PID" 2>/dev/null || true; wait "$SLAVE_PID" 2>/dev/null || true
    kill "$NAMESRV_PID"; wait "$NAMESRV_PID" 2>/dev/null || true; NAMESRV_PID=""
done

# ---------------------------------------------------------------- table
{
    echo "| flush | size | senders | produce TPS | produce MB/s | send p50/p99/p999 us | broker CPU us/msg | consume TPS | consume MB/s | verify | broker max VmRSS / RssAnon |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for f in $(ls "$OUT"/produce-*.json | sort -t- -k2,2 -k3,3n -k4,4n); do
        tag=${f#"$OUT"/produce-}; tag=${tag%.json}
        IFS=- read -r flush size conc <<< "$tag"
        p=$(jq -r '"\(.tps|floor) | \(.mb_per_sec) | \(.send_latency_us.p50)/\(.send_latency_us.p99)/\(.send_latency_us.p999)"' "$f")
        c=$(jq -r '"\(.tps|floor) | \(.mb_per_sec) | \(if .verify.ok then "ok" else "FAIL missing=\(.verify.missing) dup=\(.verify.duplicates)" end)"' "$OUT/consume-$tag.json" 2>/dev/null || echo "- | - | -")
        echo "| $flush | $size | $conc | $p | $(cat "$OUT/broker-cpu-$tag.us" 2>/dev/null || echo -) | $c | $(( $(cat "$OUT/load-rss-$tag.kib") / 1024 )) / $(( $(cat "$OUT/load-rss-$tag.kib.anon") / 1024 )) MiB |"
    done
    echo
    for f in "$OUT"/produce-HALFPEAK-*.json "$OUT"/produce-HALFTICK-*.json; do
        [[ -e "$f" ]] || continue
        size=$(jq -r .size_bytes "$f")
        jq -r --arg peak "$(cat "$OUT/peak-$size.tps")" '"at ~50% of peak (\($peak) msg/s), \(.size_bytes) B, \(.concurrency) sender(s), target \(.target_tps) msg/s, pace tick \(.pace_tick_us) us: achieved \(.tps|floor) msg/s, send latency us p50 \(.send_latency_us.p50) p99 \(.send_latency_us.p99) p999 \(.send_latency_us.p999) max \(.send_latency_us.max); from the scheduled time p50 \(.send_latency_from_scheduled_us.p50) p99 \(.send_latency_from_scheduled_us.p99) p999 \(.send_latency_from_scheduled_us.p999) (pacer wake lag p99 \(.pacer_wake_lag_us.p99))"' "$f"
    done
    for f in "$OUT"/store-append-*.json; do
        [[ -e "$f" ]] || continue
        size=$(jq -r .size_bytes "$f")
        store=$(jq -r '.tps | floor' "$f")
        single=0
        for c in $CONC; do
            g="$OUT/produce-ASYNC_FLUSH-$size-$c.json"
            [[ -e "$g" ]] || continue
            t=$(jq -r '.tps | floor' "$g"); (( t > single )) && single=$t
        done
        batch=$(jq -r '.tps | floor' "$OUT/produce-BATCH-$size-$BATCH_CONC.json" 2>/dev/null || echo 0)
        awk -v sz="$size" -v st="$store" -v cpu="$(jq -r .cpu_us_per_msg "$f")" -v si="$single" -v ba="$batch" -v bs="$BATCH_SIZE" -v bc="$BATCH_CONC" 'BEGIN {
            printf("store append vs produce, %s B: store %d msg/s (%.2f us CPU/msg); single sends best %d msg/s, store/produce = %.2f; batch %dx%d senders %d msg/s, store/produce = %.2f (goal <= 2)\n",
                sz, st, cpu, si, (si > 0) ? st / si : 0, bs, bc, ba, (ba > 0) ? st / ba : 0) }'
    done
    for flush in $FLUSHES split ${HA_ROLES-ASYNC_MASTER SYNC_MASTER}; do
        [[ -e "$OUT/startup-$flush.json" ]] || continue
        jq -r --arg f "$flush" '"start-up (\($f), empty store): topic created after \(.topic_created_ms) ms, first accepted send after \(.first_send_ms) ms"' "$OUT/startup-$flush.json"
    done
    for flush in $FLUSHES; do
        echo "idle RSS standalone (namesrv+broker, $flush): VmRSS $(( $(cat "$OUT/idle-rss-$flush.kib") / 1024 )) MiB, RssAnon $(( $(cat "$OUT/idle-rss-$flush.kib.anon") / 1024 )) MiB"
    done
    [[ -e "$OUT/idle-rss-broker.kib" ]] && echo "idle RSS separate processes (VmRSS/RssAnon): broker $(( $(cat "$OUT/idle-rss-broker.kib") / 1024 ))/$(( $(cat "$OUT/idle-rss-broker.kib.anon") / 1024 )) MiB, namesrv $(( $(cat "$OUT/idle-rss-namesrv.kib") / 1024 ))/$(( $(cat "$OUT/idle-rss-namesrv.kib.anon") / 1024 )) MiB; namesrv max during broker load $(( $(cat "$OUT/load-rss-namesrv.kib") / 1024 ))/$(( $(cat "$OUT/load-rss-namesrv.kib.anon") / 1024 )) MiB"
    for role in ${HA_ROLES-ASYNC_MASTER SYNC_MASTER}; do
        [[ -e "$OUT/load-rss-slave-$role.kib" ]] || continue
        echo "slave VmRSS after the $role runs: $(( $(cat "$OUT/load-rss-slave-$role.kib") / 1024 )) MiB"
    done
} | tee "$OUT/table.md"
echo "results in $OUT" >&2
