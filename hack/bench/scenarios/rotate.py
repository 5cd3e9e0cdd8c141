"""The rotate: M Secrets rotated one at a time; latency to the new parameter version.
"""

import statistics

from ..metrics import api_reads, api_requests, api_writes, diff_counts, reconcile_stats
from ..report import fmt_counts, pct, per
from ..settings import NS_MAIN, log, setting


def run(bench):
    bench.need_main()
    m = min(setting("BENCH_ROTATIONS"), bench.n)
    op = bench.op
    step = max(1, bench.n // m)
    before = op.settle()
    api0 = api_requests(bench.kube)
    proc0 = op.proc_status()
    log(f"rotate: rotating {m} Secrets one at a time")
    lat, spacing, _ = bench.rotate_secrets(op, NS_MAIN, [k * step for k in range(m)])
    after = op.settle()
    api1 = api_requests(bench.kube)
    ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
    writes = api_writes(api1, api0)
    lat.sort()
    bench.record(
        "rotate",
        {
            "N": bench.n,
            "M": m,
            "poll_interval_ms": setting("BENCH_POLL_MS"),
            "min_spacing_ms": round(spacing * 1000),
            **op.settings,
        },
        {
            "latency_ms": {
                "p50": round(pct(lat, 50), 1),
                "p95": round(pct(lat, 95), 1),
                "p99": round(pct(lat, 99), 1),
                "max": round(lat[-1], 1),
                "mean": round(statistics.mean(lat), 1),
            },
            "ssm_calls": ssm,
            "ssm_calls_per_rotation": per(ssm, m),
            "api_writes": writes,
            "api_writes_per_rotation": per(writes, m),
            "api_reads": api_reads(api1, api0),
            "reconciles": reconcile_stats(after, before),
            "operator_cpu_seconds": round(op.proc_status()["cpu_seconds"] - proc0["cpu_seconds"], 2),
        },
        {"ssm_calls_per_rotation": "1 GetParameter + 1 PutParameter", "api_writes_per_rotation": "1 PATCH status + 1 event"},
    )


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    lat = f["latency_ms"]
    return [
        ("latency p50/p95/p99/max", f"{lat['p50']}/{lat['p95']}/{lat['p99']}/{lat['max']} ms"),
        ("SSM calls / rotation", fmt_counts(f["ssm_calls_per_rotation"])),
        ("API writes / rotation", fmt_counts(f["api_writes_per_rotation"])),
    ]
