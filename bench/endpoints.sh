#!/usr/bin/env bash
# Small-query throughput of the SQL endpoints: PostgreSQL protocol (pgbench, simple and
# prepared) and HTTP (wrk), several concurrent clients, on the shipped config and samples.
#
#   bench/endpoints.sh [CLIENTS] [SECONDS]     (default 4 clients, 15 s each)
#
# Needs pgbench (PostgreSQL's client tools) and wrk (Debian package wrk). Uses the release
# build of iochub in $CARGO_TARGET_DIR (default /var/tmp/iochub-target); SKIP_BUILD=1 uses
# it as it is. The hub runs on a copy of the repository's config in a temporary folder, with
# the per-consumer request allowance raised so that the limiter is not what is measured.
set -euo pipefail
CLIENTS="${1:-4}"
SECONDS_EACH="${2:-15}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/iochub-target}"
PGBENCH="$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1)"
[ -x "$PGBENCH" ] || { echo "endpoints.sh: pgbench not found" >&2; exit 2; }
command -v wrk >/dev/null || { echo "endpoints.sh: wrk not found (apt-get install wrk)" >&2; exit 2; }
if [ "${SKIP_BUILD:-}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --bin iochub >&2)
fi
WORK="$(mktemp -d)"
trap 'kill "$HUB" 2>/dev/null; wait "$HUB" 2>/dev/null; rm -rf "$WORK"' EXIT
cp -r "$ROOT/config.toml" "$ROOT/pipelines" "$ROOT/schemas" "$ROOT/samples" "$ROOT/grants" "$ROOT/calendar" "$WORK/"
sed -i -e 's/^requests_per_minute = .*/requests_per_minute = 100000000/' -e 's/^burst = .*/burst = 100000/' "$WORK/config.toml"
grep -q '^requests_per_minute = 100000000' "$WORK/config.toml" || { echo "endpoints.sh: could not raise [auth] limits" >&2; exit 1; }
TOKEN=bench-tnmt-token
# exec: $! is then the hub itself, which the trap stops (a subshell's pid would leave it running).
(cd "$WORK" && IOCHUB_TOKEN_PHONG_TNMT=$TOKEN IOCHUB_TOKEN_IOC_ADMIN=bench-admin RUST_LOG=warn \
    exec "$CARGO_TARGET_DIR/release/iochub" serve --http-addr 127.0.0.1:18080 --pg-addr 127.0.0.1:15433 \
    > "$WORK/hub.log" 2>&1) &
HUB=$!
for _ in $(seq 1 120); do
    n="$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d '{"sql":"SELECT count(*) FROM schools"}' http://127.0.0.1:18080/api/v1/sql \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"][0][0])' 2>/dev/null || true)"
    [ "$n" = 22 ] && break
    sleep 0.5
done
[ "$n" = 22 ] || { echo "endpoints.sh: the hub did not come up" >&2; tail -20 "$WORK/hub.log" >&2; exit 1; }
# Measure a quiet hub: wait until the start-up ingest of every pipeline is over.
for _ in $(seq 1 120); do
    busy="$(curl -s -H 'Authorization: Bearer bench-admin' http://127.0.0.1:18080/api/v1/pipelines \
        | python3 -c 'import json,sys; p=json.load(sys.stdin)["pipelines"]; print(sum(1 for x in p if x["running"] or x["last_run"] is None))')"
    [ "$busy" = 0 ] && break
    sleep 0.5
done
QUERY='SELECT commune_name, sum(students_total) FROM schools GROUP BY commune_name'
echo "$QUERY;" > "$WORK/q.sql"
pg() {
    PGPASSWORD=$TOKEN "$PGBENCH" -n -M "$1" -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -f "$WORK/q.sql" \
        "host=127.0.0.1 port=15433 user=phong_tnmt dbname=iochub sslmode=disable" > "$WORK/pgbench-$1.txt" 2>&1 \
        || { echo "endpoints.sh: pgbench -M $1 failed:" >&2; cat "$WORK/pgbench-$1.txt" >&2; exit 1; }
    awk '/^tps/ {print $3}; /latency average/ {print $4}' "$WORK/pgbench-$1.txt"
}
SIMPLE="$(pg simple)"
PREPARED="$(pg prepared)"
# pgbench prints the mean latency, then the throughput.
PG_SIMPLE_LAT="$(echo "$SIMPLE" | sed -n 1p)"; PG_SIMPLE_TPS="$(echo "$SIMPLE" | sed -n 2p)"
PG_PREP_LAT="$(echo "$PREPARED" | sed -n 1p)"; PG_PREP_TPS="$(echo "$PREPARED" | sed -n 2p)"
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"sql": "$QUERY"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
WRK="$(wrk -t 2 -c "$CLIENTS" -d "${SECONDS_EACH}s" -s "$WORK/post.lua" http://127.0.0.1:18080/api/v1/sql)"
HTTP_RPS="$(echo "$WRK" | awk '/Requests\/sec/ {print $2}')"
HTTP_LAT="$(echo "$WRK" | awk '/Latency/ {print $2; exit}')"
HTTP_ERR="$(echo "$WRK" | awk '/Non-2xx/ {print $5}')"
echo "query: $QUERY"
echo "clients: $CLIENTS, $SECONDS_EACH s each"
echo "| endpoint | queries/s | mean latency |"
echo "| --- | ---: | ---: |"
echo "| PostgreSQL, simple protocol (pgbench -M simple) | $PG_SIMPLE_TPS | $PG_SIMPLE_LAT ms |"
echo "| PostgreSQL, prepared (pgbench -M prepared) | $PG_PREP_TPS | $PG_PREP_LAT ms |"
echo "| HTTP POST /api/v1/sql (wrk) | $HTTP_RPS | $HTTP_LAT |"
[ -z "$HTTP_ERR" ] || echo "HTTP non-2xx answers: $HTTP_ERR"
