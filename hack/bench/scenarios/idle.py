"""The idle: nothing changes for BENCH_IDLE_SECONDS; only drift checks may happen.
"""

import time

from ..metrics import (
    DRIFT_CHECKED,
    api_reads,
    api_requests,
    api_writes,
    diff_counts,
    reconcile_stats,
)
from ..operator import start_operator, stop_operator
from ..report import fmt_counts
from ..settings import NS_MAIN, log, setting


def run(bench):
    bench.need_main()
    n, seconds, interval = bench.n, setting("BENCH_IDLE_SECONDS"), setting("BENCH_DRIFT_INTERVAL")
    op = bench.op
    if op.settings["VCO_DRIFT_CHECK_INTERVAL"] != f"{interval}s":
        stop_operator(op)
        bench.op = op = start_operator([NS_MAIN], setting("BENCH_WRITE_RATE"), interval, "idle")
        op.wait(lambda s: s.total(DRIFT_CHECKED) >= n, timeout=600, what="catch-up")
    op.settle(reads_continue=True)
    since_start = time.monotonic() - op.started
    before = op.metrics()
    api0 = api_requests(bench.kube)
    proc0 = op.proc_status()
    log(f"idle: watching for {seconds}s (drift interval {interval}s)")
    time.sleep(seconds)
    after = op.metrics()
    api1 = api_requests(bench.kube)
    proc1 = op.proc_status()
    ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
    writes = api_writes(api1, api0)
    bench.record(
        "idle",
        {"N": n, "idle_seconds": seconds, "window_starts_after_operator_start_s": round(since_start, 1), **op.settings},
        {
            "ssm_calls": ssm,
            "expected_get_parameters": round(-(-n // 10) * seconds / interval),
            "ssm_writes": sum(v for k, v in ssm.items() if k.startswith("PutParameter")),
            "api_writes": writes,
            "api_reads": api_reads(api1, api0),
            "reconciles": reconcile_stats(after, before),
            "operator_cpu_seconds": round(proc1["cpu_seconds"] - proc0["cpu_seconds"], 2),
            "rss_mib_start": proc0["rss_mib"],
            "rss_mib_end": proc1["rss_mib"],
        },
        {"ssm_calls": "ceil(N/10) x idle / interval GetParameters, no GetParameter", "ssm_writes": 0, "api_writes": "none", "api_reads": "none"},
    )


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    return [
        ("SSM calls", f"{fmt_counts(f['ssm_calls'])} (expected ~{f['expected_get_parameters']} GetParameters)"),
        ("API writes", fmt_counts(f["api_writes"])),
        ("operator CPU", f"{f['operator_cpu_seconds']} s"),
    ]
