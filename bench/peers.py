#!/usr/bin/env python3
"""Peer baseline for iochub-bench: the same JSONL -> Parquet ingest and the
same four queries (bench/queries.sql), run with DuckDB and with Polars.

    python3 bench/peers.py --jsonl /var/tmp/iochub-bench/reports.jsonl \
        --workdir /var/tmp/iochub-bench/peers --threads 2

Each engine runs in a child process of its own (this script re-executed with
--engine), so that its thread limit is set before the library loads, and its
peak RSS is its own. The parent prints ONE JSON object on stdout:

    {"duckdb": {...}, "polars": {...}, "versions": {...}, ...}

where each engine has ingest_seconds, records, records_per_second,
mb_per_second (MB = 10^6 bytes of JSONL), parquet_bytes, peak_rss_mb and
queries {name: median seconds}. Warnings (row counts or results that differ
between the engines) go to stderr.

Unlike iochub, the peers do NOT validate records against the JSON Schema:
they only parse them into typed columns. Keep that in mind when comparing
ingest throughput.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Column order and types of a citizen report (Open311 GeoReport v2 + x_*).
# Timestamps are instants (TIMESTAMP WITH TIME ZONE, UTC), x_submitter is
# kept as JSON text, as in iochub's table.
COLUMNS = [
    ("service_request_id", "str"),
    ("jurisdiction_id", "str"),
    ("service_code", "str"),
    ("service_name", "str"),
    ("description", "str"),
    ("status", "str"),
    ("status_notes", "str"),
    ("agency_responsible", "str"),
    ("service_notice", "str"),
    ("requested_datetime", "ts"),
    ("updated_datetime", "ts"),
    ("expected_datetime", "ts"),
    ("address", "str"),
    ("address_id", "str"),
    ("zipcode", "str"),
    ("lat", "f64"),
    ("long", "f64"),
    ("media_url", "str"),
    ("x_status_detail", "str"),
    ("x_channel", "str"),
    ("x_language", "str"),
    ("x_reported_commune", "str"),
    ("x_submitter", "json"),
]


def load_queries(path: Path) -> dict[str, str]:
    """Split a file of queries separated by `-- name: <id>` lines."""
    queries: dict[str, str] = {}
    name = None
    body: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("-- name:"):
            if name is not None:
                queries[name] = "\n".join(body).strip()
            name = stripped[len("-- name:"):].strip()
            body = []
        elif name is not None:
            body.append(line)
    if name is not None:
        queries[name] = "\n".join(body).strip()
    if not queries:
        raise SystemExit(f"no `-- name:` queries found in {path}")
    return queries


def warm_file(path: Path) -> None:
    """Read the input once so that neither engine pays for a cold page cache."""
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def time_query(run, repeat: int) -> tuple[float, list]:
    """1 warm-up run, then the median of `repeat` timed runs (seconds)."""
    rows = run()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), rows


def normalise(value):
    """Make a result cell comparable across engines (and JSON-serialisable)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds") + "Z"
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 9)
    if hasattr(value, "is_finite"):  # decimal.Decimal
        return round(float(value), 9)
    return value


# --------------------------------------------------------------------------
# DuckDB
# --------------------------------------------------------------------------

def run_duckdb(args, queries: dict[str, str]) -> dict:
    import duckdb

    duck_types = {"str": "VARCHAR", "ts": "TIMESTAMPTZ", "f64": "DOUBLE", "json": "JSON"}
    columns = "{" + ", ".join(f"'{c}': '{duck_types[t]}'" for c, t in COLUMNS) + "}"
    out = Path(args.workdir) / "duckdb.parquet"
    out.unlink(missing_ok=True)
    jsonl = str(Path(args.jsonl).resolve()).replace("'", "''")

    con = duckdb.connect()
    con.execute(f"SET threads={int(args.threads)}")
    con.execute("SET TimeZone='UTC'")
    sql = (
        f"COPY (SELECT * FROM read_json('{jsonl}', format='newline_delimited', "
        f"columns={columns})) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
    )
    t0 = time.perf_counter()
    con.execute(sql)
    ingest = time.perf_counter() - t0
    con.close()

    con = duckdb.connect()
    con.execute(f"SET threads={int(args.threads)}")
    con.execute("SET TimeZone='UTC'")
    con.execute(f"CREATE VIEW reports AS SELECT * FROM read_parquet('{out}')")
    records = con.execute("SELECT count(*) FROM reports").fetchone()[0]
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])

    times, rows = {}, {}
    for name, q in queries.items():
        times[name], rows[name] = time_query(lambda q=q: con.execute(q).fetchall(), args.repeat)
    con.close()
    return engine_report("duckdb", duckdb.__version__, threads, args, records, ingest, out, times, rows, [])


# --------------------------------------------------------------------------
# Polars
# --------------------------------------------------------------------------

def polars_exprs(pl):
    """Polars-expression equivalents of bench/queries.sql.

    Used only for a query that the installed Polars' SQLContext cannot run,
    or for all of them with --polars-exprs. Polars 2.x runs all four queries
    as SQL; Polars 1.x cannot run q2 (it rejects CAST(... AS TIMESTAMP WITH
    TIME ZONE) and every other unambiguous UTC literal), so q2 falls back to
    its expression there. They must stay equivalent to bench/queries.sql."""
    utc = dt.timezone.utc
    lo = dt.datetime(2025, 3, 31, 17, 0, 0, tzinfo=utc)  # 2025-04-01T00:00:00+07:00
    hi = dt.datetime(2025, 4, 30, 17, 0, 0, tzinfo=utc)  # 2025-05-01T00:00:00+07:00
    c = pl.col
    return {
        "q1_count_by_category": lambda lf: lf.group_by("service_code")
        .agg(pl.len().alias("n"))
        .sort(["n", "service_code"], descending=[True, False]),
        "q2_commune_status_month": lambda lf: lf.filter(
            (c("requested_datetime") >= lo) & (c("requested_datetime") < hi)
        )
        .group_by(["x_reported_commune", "status"])
        .agg(pl.len().alias("n"))
        .sort(["x_reported_commune", "status"]),
        "q3_late_share_by_commune": lambda lf: lf.filter(c("status") == "closed")
        .group_by("x_reported_commune")
        .agg(
            (
                (c("updated_datetime") > c("requested_datetime") + pl.duration(days=3)).sum().cast(pl.Float64)
                / pl.len()
            ).alias("late_share"),
            pl.len().alias("n"),
        )
        .sort(["late_share", "x_reported_commune"], descending=[True, False]),
        "q4_newest_rac": lambda lf: lf.filter(c("description").str.contains("rác", literal=True))
        .sort(["requested_datetime", "service_request_id"], descending=[True, True])
        .head(20)
        .select("service_request_id", "requested_datetime", "description"),
    }


def run_polars(args, queries: dict[str, str]) -> dict:
    # POLARS_MAX_THREADS was set (in child()) before this first import.
    import polars as pl

    pl_types = {
        "str": pl.String,
        "ts": pl.Datetime("us", "UTC"),  # offsets (+07:00) are converted to UTC
        "f64": pl.Float64,
        "json": pl.String,  # the nested object is kept as its JSON text
    }
    schema = {c: pl_types[t] for c, t in COLUMNS}
    out = Path(args.workdir) / "polars.parquet"
    out.unlink(missing_ok=True)

    t0 = time.perf_counter()
    pl.scan_ndjson(args.jsonl, schema=schema).sink_parquet(out, compression="zstd")
    ingest = time.perf_counter() - t0

    lf = pl.scan_parquet(out)
    records = lf.select(pl.len()).collect().item()
    ctx = pl.SQLContext(reports=lf)
    exprs = polars_exprs(pl)

    times, rows, fallback = {}, {}, []
    for name, q in queries.items():
        use_expr = args.polars_exprs and name in exprs
        if not use_expr:
            try:
                ctx.execute(q).collect()
            except Exception as e:  # noqa: BLE001 - any SQL failure -> expression fallback
                if name not in exprs:
                    raise
                print(f"peers: polars SQL cannot run {name} ({type(e).__name__}: {e}); "
                      "using the Polars-expression equivalent", file=sys.stderr)
                use_expr = True
        if use_expr:
            fallback.append(name)
            run = lambda f=exprs[name]: f(lf).collect().rows()  # noqa: E731
        else:
            run = lambda q=q: ctx.execute(q).collect().rows()  # noqa: E731
        times[name], rows[name] = time_query(run, args.repeat)
    return engine_report("polars", pl.__version__, pl.thread_pool_size(), args, records, ingest, out, times, rows, fallback)


# --------------------------------------------------------------------------

def engine_report(engine, version, threads, args, records, ingest, out, times, rows, fallback) -> dict:
    jsonl_bytes = os.path.getsize(args.jsonl)
    return {
        "engine": engine,
        "version": version,
        "threads": threads,
        "records": records,
        "ingest_seconds": round(ingest, 6),
        "records_per_second": round(records / ingest, 1),
        "mb_per_second": round(jsonl_bytes / 1e6 / ingest, 3),
        "parquet_bytes": os.path.getsize(out),
        "peak_rss_mb": peak_rss_mb(),
        "queries": {k: round(v, 6) for k, v in times.items()},
        "rows": {k: len(v) for k, v in rows.items()},
        "results": {k: [[normalise(x) for x in r] for r in v] for k, v in rows.items()},
        "polars_expression_fallback": fallback if engine == "polars" else None,
    }


def child(args) -> None:
    # Polars reads this once, when it is first imported (in run_polars).
    os.environ["POLARS_MAX_THREADS"] = str(args.threads)
    queries = load_queries(Path(args.queries))
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    report = run_duckdb(args, queries) if args.engine == "duckdb" else run_polars(args, queries)
    json.dump(report, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


def compare(reports: dict[str, dict]) -> list[str]:
    warnings = []
    duck, pol = reports["duckdb"], reports["polars"]
    for name in duck["rows"]:
        a, b = duck["rows"].get(name), pol["rows"].get(name)
        if a != b:
            warnings.append(f"{name}: row counts differ: duckdb={a} polars={b}")
            continue
        ra, rb = duck["results"][name], pol["results"][name]
        for i, (x, y) in enumerate(zip(ra, rb)):
            if not rows_equal(x, y):
                warnings.append(f"{name}: row {i} differs: duckdb={x} polars={y}")
                break
    if duck["records"] != pol["records"]:
        warnings.append(f"record counts differ: duckdb={duck['records']} polars={pol['records']}")
    return warnings


def rows_equal(x, y) -> bool:
    if len(x) != len(y):
        return False
    for a, b in zip(x, y):
        if isinstance(a, float) or isinstance(b, float):
            if a is None or b is None or not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif a != b:
            return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jsonl", required=True, help="newline-delimited JSON reports")
    p.add_argument("--workdir", required=True, help="where the Parquet files are written")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--queries", default=str(HERE / "queries.sql"))
    p.add_argument("--repeat", type=int, default=15, help="timed runs per query (median); 1 warm-up before")
    p.add_argument("--polars-exprs", action="store_true",
                   help="run Polars queries as expressions instead of SQL (to check the fallback)")
    p.add_argument("--engine", choices=["duckdb", "polars"], help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.engine:
        child(args)
        return

    if not os.path.isfile(args.jsonl):
        raise SystemExit(f"peers: no such file: {args.jsonl}")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    warm_file(Path(args.jsonl))

    env = dict(os.environ)
    env["POLARS_MAX_THREADS"] = str(args.threads)  # read by Polars at import time
    reports = {}
    for engine in ("duckdb", "polars"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--engine", engine,
               "--jsonl", args.jsonl, "--workdir", args.workdir, "--threads", str(args.threads),
               "--queries", args.queries, "--repeat", str(args.repeat)]
        if args.polars_exprs:
            cmd.append("--polars-exprs")
        print(f"peers: running {engine} ...", file=sys.stderr)
        res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        if res.returncode != 0:
            raise SystemExit(f"peers: {engine} failed (exit {res.returncode})")
        reports[engine] = json.loads(res.stdout.strip().splitlines()[-1])

    warnings = compare(reports)
    for w in warnings:
        print(f"peers: WARNING: {w}", file=sys.stderr)

    out = {"jsonl": os.path.abspath(args.jsonl), "jsonl_bytes": os.path.getsize(args.jsonl),
           "threads": args.threads}
    for engine, r in reports.items():
        r.pop("results")
        r.pop("engine")
        if r.get("polars_expression_fallback") is None:
            r.pop("polars_expression_fallback", None)
        out[engine] = r
    out["versions"] = {"duckdb": reports["duckdb"]["version"], "polars": reports["polars"]["version"],
                       "python": sys.version.split()[0]}
    out["row_counts_match"] = not any("row counts differ" in w or "record counts" in w for w in warnings)
    out["results_match"] = not warnings
    json.dump(out, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
