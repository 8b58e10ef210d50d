#!/usr/bin/env bash
# Benchmark of the ingest worker's durable path against a verify-only baseline, and of the
# same durable worker reached through the webhook front door against reaching it
# directly, measured side by side in one run on loopback (make bench). Not a test: it
# prints figures. FRONTDOOR=0 skips the front door phase. MEDIA=0 skips the media phases:
# the webhook path with media deliveries against text (the worker fetching the files
# from a local Graph API and CDN meanwhile), and the worker's fetch throughput against a
# plain HTTP download of the same files. ENCRYPTION=0 skips the encryption phase: the same
# durable worker without and with its data key (--data-key-file), each on a store of its
# own, at every batch size (target: at least 0.9 of the throughput with the key), in
# ENCRYPTION_ROUNDS (default 4) pairs of phases, alternating which worker goes first.
#
#   CLIENTS=64 DURATION=10s BATCHES=1,10 USERS=5000 hack/bench.sh
#
# WORKER=/path/to/ingest-worker runs that binary (say, one built from an earlier commit)
# instead of building this tree's, for paired before/after runs; FRONTDOOR_BIN likewise
# for the front door.
#
# PIN=1 runs the front door on a core of its own (the last one, with taskset) and
# everything else (workers, load generator) on the other cores, in every phase: the
# shape of a cluster, where the front door's pods run apart from the tenants' workers.
# Unpinned, the three processes share every core, and the door's own CPU comes out of
# the worker's. The front door is compared with the direct path in FRONTDOOR_ROUNDS
# (default 4) alternating slices of DURATION each, so that the load of other processes
# on the machine, which changes from one phase to the next, weighs on both alike.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
USERS=${USERS:-5000}
BATCHES=${BATCHES:-1,10}
MAX_DELIVERIES=${MAX_DELIVERIES:-300000}
FRONTDOOR=${FRONTDOOR:-1}
FRONTDOOR_ROUNDS=${FRONTDOOR_ROUNDS:-4}
MEDIA=${MEDIA:-1}
ENCRYPTION=${ENCRYPTION:-1}
ENCRYPTION_ROUNDS=${ENCRYPTION_ROUNDS:-4}
MEDIA_SIZE=${MEDIA_SIZE:-32768}
MEDIA_MAX_DELIVERIES=${MEDIA_MAX_DELIVERIES:-5000}
FETCH_FILES=${FETCH_FILES:-200}
FETCH_SIZE=${FETCH_SIZE:-1048576}
# The store must be on a real disk for fsync to cost what it costs in production: default
# to /var/tmp (tmpfs /tmp would flatter the durable figures).
WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/omniflow-bench.XXXXXX")
PIDS=()
PIN=${PIN:-0}
PIN_DOOR=()
PIN_REST=()
if [ "$PIN" = 1 ]; then
	last=$(($(nproc) - 1))
	if [ "$last" -lt 1 ] || ! command -v taskset >/dev/null; then
		echo "PIN=1 needs taskset and at least 2 cores" >&2
		exit 1
	fi
	PIN_DOOR=(taskset -c "$last")
	PIN_REST=(taskset -c "0-$((last - 1))")
fi

cleanup() {
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

cd "$ROOT"
echo "building ingest-worker, frontdoor and loadgen (CGO_ENABLED=0)..."
if [ -n "${WORKER:-}" ]; then
	cp "$WORKER" "$WORK/ingest-worker"
	echo "ingest-worker: $WORKER"
else
	CGO_ENABLED=0 go build -o "$WORK/ingest-worker" ./cmd/ingest-worker
fi
if [ -n "${FRONTDOOR_BIN:-}" ]; then
	cp "$FRONTDOOR_BIN" "$WORK/frontdoor"
	echo "frontdoor: $FRONTDOOR_BIN"
else
	CGO_ENABLED=0 go build -o "$WORK/frontdoor" ./cmd/frontdoor
fi
CGO_ENABLED=0 go build -o "$WORK/loadgen" ./hack/loadgen

# The media phases' Graph API and CDN: a local server the channel's graphAPIBaseURL
# points at, accepting the channel's access token.
MEDIA_ARGS=()
MEDIA_YAML=""
if [ "$MEDIA" = 1 ]; then
	"${PIN_REST[@]}" "$WORK/loadgen" media-server --listen 127.0.0.1:0 --token bench-media-token >"$WORK/media.url" 2>"$WORK/media.log" &
	PIDS+=("$!")
	for _ in $(seq 1 100); do
		[ -s "$WORK/media.url" ] && break
		sleep 0.1
	done
	MEDIA_URL=$(head -1 "$WORK/media.url")
	MEDIA_YAML="    accessToken: bench-media-token
    graphAPIBaseURL: $MEDIA_URL"
	MEDIA_ARGS=(--media "$MEDIA_URL" --media-token bench-media-token --media-size "$MEDIA_SIZE" --media-max-deliveries "$MEDIA_MAX_DELIVERIES"
		--fetch-files "$FETCH_FILES" --fetch-size "$FETCH_SIZE")
	echo "media server (Graph API and CDN) on $MEDIA_URL"
fi

cat >"$WORK/channels.yaml" <<YAML
tenant: bench
channels:
  - name: wa
    platform: WhatsApp
    whatsApp: {phoneNumberID: "123456789012345", businessAccountID: "109876543210987"}
    appSecret: bench_app_secret
    verifyToken: bench-verify
$MEDIA_YAML
YAML

# The front door's secrets: the same app secret as the channel (loadgen signs with it),
# and a forwarding key from which the bench tenant's credential is derived.
printf 'bench_app_secret' >"$WORK/app-secret"
printf 'bench-verify' >"$WORK/verify-token"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/forwarding.key"
"$WORK/frontdoor" tenant-key --forwarding-key-file "$WORK/forwarding.key" --tenant bench >"$WORK/bench.key"

# start NAME ARGS...: runs a worker on an ephemeral loopback port and sets ADDR once it
# is ready. (Not called in $(...): the worker would hold the substitution's pipe open.)
start() {
	local name=$1
	shift
	run "$name" "${PIN_REST[@]}" "$WORK/ingest-worker" serve --listen 127.0.0.1:0 --channels "$WORK/channels.yaml" "$@"
}

# run NAME CMD...: runs a server that logs "Ready" and its address, and sets ADDR.
run() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=("$!")
	ADDR=""
	for _ in $(seq 1 300); do
		if grep -q '"msg":"Ready"' "$WORK/$name.log"; then
			ADDR=$(grep -o '"addr":"127.0.0.1:[0-9]*"' "$WORK/$name.log" | head -1 | cut -d'"' -f4)
			return 0
		fi
		sleep 0.1
	done
	echo "$name did not become ready:" >&2
	cat "$WORK/$name.log" >&2
	return 1
}

start durable --data-dir "$WORK/data" --forward-key-file "$WORK/bench.key"
DURABLE=$ADDR
DURABLE_PID=${PIDS[-1]}
start baseline --verify-only
BASELINE=$ADDR
BASELINE_PID=${PIDS[-1]}
echo "durable worker on $DURABLE (store in $WORK/data), baseline on $BASELINE"
FRONTDOOR_ARGS=()
if [ "$FRONTDOOR" = 1 ]; then
	cat >"$WORK/routes.yaml" <<YAML
tenants:
  - name: bench
    worker: http://$DURABLE
    channels:
      - {platform: WhatsApp, whatsApp: {phoneNumberID: "123456789012345", businessAccountID: "109876543210987"}}
YAML
	run frontdoor "${PIN_DOOR[@]}" "$WORK/frontdoor" serve --listen 127.0.0.1:0 --routes "$WORK/routes.yaml" \
		--app-secret-file "$WORK/app-secret" --verify-token-file "$WORK/verify-token" --forwarding-key-file "$WORK/forwarding.key"
	FRONTDOOR_ARGS=(--frontdoor "http://$ADDR" --frontdoor-pid "${PIDS[-1]}" --frontdoor-rounds "$FRONTDOOR_ROUNDS")
	if [ "$PIN" = 1 ]; then
		FRONTDOOR_ARGS+=(--frontdoor-own-core)
	fi
	echo "front door on $ADDR, routing to the durable worker"
fi
ENCRYPTION_ARGS=()
if [ "$ENCRYPTION" = 1 ]; then
	"$WORK/loadgen" data-key >"$WORK/data-key.json"
	start clear --data-dir "$WORK/data-clear"
	ENCRYPTION_ARGS=(--clear "http://$ADDR" --clear-pid "${PIDS[-1]}")
	start sealed --data-dir "$WORK/data-sealed" --data-key-file "$WORK/data-key.json"
	ENCRYPTION_ARGS+=(--sealed "http://$ADDR" --sealed-pid "${PIDS[-1]}" --encryption-rounds "$ENCRYPTION_ROUNDS")
	echo "encryption phase: workers without and with a data key on ${ENCRYPTION_ARGS[1]} and ${ENCRYPTION_ARGS[5]}"
fi
echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3)"
# The ratio is only meaningful on a quiet machine: record how busy it was.
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$PIN" = 1 ]; then
	echo "pinned: front door on CPU $last, workers and load generator on CPUs 0-$((last - 1))"
fi
echo

"${PIN_REST[@]}" "$WORK/loadgen" --target "http://$DURABLE" --baseline "http://$BASELINE" --clients "$CLIENTS" \
	--batches "$BATCHES" --duration "$DURATION" --warmup "$WARMUP" --max-deliveries "$MAX_DELIVERIES" \
	--users "$USERS" --secret bench_app_secret --channel wa --phone-number-id 123456789012345 \
	--target-pid "$DURABLE_PID" --baseline-pid "$BASELINE_PID" "${FRONTDOOR_ARGS[@]}" "${MEDIA_ARGS[@]}" "${ENCRYPTION_ARGS[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

if command -v curl >/dev/null; then
	echo
	echo "durable worker's store metrics:"
	curl -fsS "http://$DURABLE/metrics" | grep -E '^omniflow_store_commit_(group_size|duration_seconds)_(sum|count)|^omniflow_ingest_deliveries_total\{result="(stored|store_error)"|^omniflow_worker_files_(fetched_total|fetched_bytes_total|pending) ' || true
fi
