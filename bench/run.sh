#!/usr/bin/env bash
# Benchmark iochub's ingest + queries against DuckDB and Polars on the same data.
#
#   bench/run.sh [N]          N synthetic reports (default 1000000)
#
# Environment:
#   BENCH_DIR        where data and results go       (default /var/tmp/iochub-bench)
#   CARGO_TARGET_DIR cargo's target directory         (default /var/tmp/iochub-target)
#   THREADS          threads for DuckDB and Polars    (default 2)
#   REPEAT           timed runs per query, every engine (default 15; median reported)
#   PYTHON           Python 3.11+ interpreter          (default python3)
#   SKIP_BUILD=1     use the already built iochub-bench binary
#
# Writes $BENCH_DIR/iochub.json, $BENCH_DIR/peers.json and $BENCH_DIR/report.md,
# and prints the report (Markdown) on stdout.
set -euo pipefail

N="${1:-1000000}"
if ! [[ "$N" =~ ^[0-9]+$ ]] || [ "$N" -le 0 ]; then
    echo "usage: $0 [N]   (N = number of records, default 1000000)" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-/var/tmp/iochub-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/iochub-target}"
THREADS="${THREADS:-2}"
REPEAT="${REPEAT:-15}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$BENCH_DIR"
cd "$ROOT"

log() { echo "run.sh: $*" >&2; }

# --- peers' Python packages ---------------------------------------------------
# Polars >= 2 is needed for q2's `CAST(... AS TIMESTAMP WITH TIME ZONE)` in SQL
# (older Polars would fall back to an equivalent Polars expression, see
# peers.py); DuckDB 1.x needs pytz to hand TIMESTAMPTZ values to Python.
NEED="$("$PYTHON" - <<'PY'
need = []
try:
    import duckdb
    if int(duckdb.__version__.split(".")[0]) < 2:
        try:
            import pytz  # noqa: F401
        except ImportError:
            need.append("pytz")
except ImportError:
    need.append("duckdb")
try:
    import polars
    if int(polars.__version__.split(".")[0]) < 2:
        need.append("polars>=2")
except ImportError:
    need.append("polars")
print(" ".join(need))
PY
)"
if [ -n "$NEED" ]; then
    log "pip install $NEED"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip install --quiet --disable-pip-version-check $NEED \
        || "$PYTHON" -m pip install --quiet --disable-pip-version-check --break-system-packages $NEED
fi

# --- iochub -------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != "1" ]; then
    log "cargo build --release --bin iochub-bench (target: $CARGO_TARGET_DIR)"
    cargo build --release --bin iochub-bench >&2
fi
BIN="$CARGO_TARGET_DIR/release/iochub-bench"
[ -x "$BIN" ] || { log "no binary at $BIN"; exit 1; }

# Read an input left by an earlier run once, so iochub, like the peers after it, reads it
# from the page cache: a build in between can evict it, and reading 714 MB from this disk
# took longer than the whole ingest (11 s instead of 3.5 s, seen 2026-12-02).
if [ -f "$BENCH_DIR/reports.jsonl" ]; then
    cat "$BENCH_DIR/reports.jsonl" > /dev/null
fi
log "iochub-bench --records $N --out $BENCH_DIR"
"$BIN" --records "$N" --out "$BENCH_DIR" --repeat "$REPEAT" > "$BENCH_DIR/iochub.raw"
# Keep the last line of stdout that is a JSON object (the bench prints one).
"$PYTHON" - "$BENCH_DIR/iochub.raw" "$BENCH_DIR/iochub.json" <<'PY'
import json, sys
obj = None
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError:
            pass
if obj is None:
    try:
        obj = json.loads(open(sys.argv[1], encoding="utf-8").read())
    except ValueError:
        sys.exit("run.sh: iochub-bench printed no JSON object on stdout")
json.dump(obj, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False, indent=2)
PY
rm -f "$BENCH_DIR/iochub.raw"

JSONL="$BENCH_DIR/reports.jsonl"
[ -f "$JSONL" ] || { log "iochub-bench left no $JSONL"; exit 1; }

# --- peers --------------------------------------------------------------------
log "peers (DuckDB, Polars; $THREADS threads) on $JSONL"
"$PYTHON" "$ROOT/bench/peers.py" --jsonl "$JSONL" --workdir "$BENCH_DIR/peers" \
    --threads "$THREADS" --repeat "$REPEAT" --queries "$ROOT/bench/queries.sql" > "$BENCH_DIR/peers.json"

# --- report -------------------------------------------------------------------
CPU_MODEL="$(grep -m1 -E '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
export CPU_MODEL NPROC="$(nproc)" MEM_KB="$(awk '/^MemTotal/ {print $2}' /proc/meminfo 2>/dev/null || true)"
export KERNEL="$(uname -sr)" RUSTC="$(rustc --version 2>/dev/null || echo unknown)"
export IOCHUB_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
export IOCHUB_VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"
export THREADS REPEAT

"$PYTHON" - "$BENCH_DIR/iochub.json" "$BENCH_DIR/peers.json" <<'PY' | tee "$BENCH_DIR/report.md"
import json, os, sys

io = json.load(open(sys.argv[1], encoding="utf-8"))
peers = json.load(open(sys.argv[2], encoding="utf-8"))
dk, po = peers["duckdb"], peers["polars"]
env = os.environ

def secs(v):
    # A query time may be a number or an object such as {"median": s}.
    if isinstance(v, dict):
        v = v.get("median", v.get("seconds"))
    return float(v) if v is not None else None

def fmt(v, kind):
    if v is None:
        return "–"
    if kind == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    if kind == "int":
        return f"{v:,.0f}"
    return f"{v:,.1f}"

def ratio(a, b):
    if a is None or b is None or b == 0 or a == 0:
        return "–"
    return f"{a / b:.2f}×"

jsonl_bytes = io.get("bytes") or peers.get("jsonl_bytes")

def mbps(bytes_, seconds, reported=None):
    if bytes_ and seconds:
        return bytes_ / 1e6 / seconds
    return reported

# Rows: (label, kind, iochub, duckdb, polars, higher_is_better)
rows = [
    ("ingest records/s", "int", io.get("records_per_second"), dk["records_per_second"], po["records_per_second"], True),
    ("ingest MB/s (JSONL, 10^6 B)", "num",
     mbps(io.get("bytes"), io.get("ingest_seconds"), io.get("mb_per_second")),
     mbps(peers["jsonl_bytes"], dk["ingest_seconds"]), mbps(peers["jsonl_bytes"], po["ingest_seconds"]), True),
    ("ingest seconds", "s", io.get("ingest_seconds"), dk["ingest_seconds"], po["ingest_seconds"], False),
    ("Parquet bytes", "int", io.get("parquet_bytes"), dk["parquet_bytes"], po["parquet_bytes"], False),
    ("peak RSS MB", "num", io.get("peak_rss_mb"), dk.get("peak_rss_mb"), po.get("peak_rss_mb"), False),
]
names = list(dict.fromkeys(list((io.get("queries") or {}).keys()) + list(dk["queries"].keys())))
for q in names:
    rows.append((f"`{q}`", "s", secs((io.get("queries") or {}).get(q)), secs(dk["queries"].get(q)),
                 secs(po["queries"].get(q)), False))

out = []
p = out.append
records = io.get("records")
p(f"# iochub vs DuckDB vs Polars — {records:,} records" if isinstance(records, int)
  else f"# iochub vs DuckDB vs Polars — {records} records")
p("")
p(f"- machine: {env.get('NPROC')} CPUs ({env.get('CPU_MODEL') or 'unknown CPU'}), "
  f"{int(env['MEM_KB']) / 1048576:.1f} GiB RAM, {env.get('KERNEL')}" if env.get("MEM_KB")
  else f"- machine: {env.get('NPROC')} CPUs ({env.get('CPU_MODEL') or 'unknown CPU'}), {env.get('KERNEL')}")
p(f"- versions: iochub {env.get('IOCHUB_VERSION') or '?'} ({env.get('IOCHUB_REV')}), {env.get('RUSTC')}; "
  f"DuckDB {peers['versions']['duckdb']}, Polars {peers['versions']['polars']}, "
  f"Python {peers['versions'].get('python', '?')}")
p(f"- input: {jsonl_bytes:,} bytes of JSONL; peers limited to {peers.get('threads', env.get('THREADS'))} threads "
  f"(DuckDB `SET threads`, Polars `POLARS_MAX_THREADS`); query times are the median of {env.get('REPEAT', '15')} runs after 1 warm-up")
p("- iochub validates every record against the JSON Schema and writes a Delta table; "
  "DuckDB and Polars only parse typed columns into one Parquet file (no validation)")
p("")
p("Ratios are **iochub's cost relative to the peer**: for times, sizes and memory it is iochub ÷ peer; "
  "for throughput (records/s, MB/s) it is peer ÷ iochub. So in every row **< 1× means iochub is better, "
  "> 1× means iochub is worse** (e.g. 2.00× = iochub takes twice the time, or reaches half the throughput). "
  "\"Best peer\" is the better of DuckDB and Polars for that row.")
p("")
p("| metric | iochub | DuckDB | Polars | iochub vs DuckDB | iochub vs best peer |")
p("| --- | ---: | ---: | ---: | ---: | ---: |")
for label, kind, a, d, pol, higher in rows:
    peers_vals = [v for v in (d, pol) if v is not None]
    best = (max(peers_vals) if higher else min(peers_vals)) if peers_vals else None
    if higher:
        r_d, r_b = ratio(d, a), ratio(best, a)
    else:
        r_d, r_b = ratio(a, d), ratio(a, best)
    arrow = "↑ better" if higher else "↓ better"
    p(f"| {label} ({arrow}) | {fmt(a, kind)} | {fmt(d, kind)} | {fmt(pol, kind)} | {r_d} | {r_b} |")
p("")
notes = []
if io.get("records") is not None and io.get("records") != dk.get("records"):
    notes.append(f"record counts differ: iochub {io.get('records')}, DuckDB {dk.get('records')}, Polars {po.get('records')}")
if not peers.get("row_counts_match", True):
    notes.append("DuckDB and Polars returned different row counts for some query (see peers' stderr)")
elif not peers.get("results_match", True):
    notes.append("DuckDB and Polars returned different results for some query (see peers' stderr)")
fb = po.get("polars_expression_fallback") or []
if fb:
    notes.append("Polars ran these as Polars expressions, not SQL: " + ", ".join(fb))
for n in notes:
    p(f"> **note:** {n}")
print("\n".join(out))
PY
log "results in $BENCH_DIR (iochub.json, peers.json, report.md)"
