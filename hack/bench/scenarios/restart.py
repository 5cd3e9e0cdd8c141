"""The restart: SIGTERM the operator over N Ready connections and start it again.
"""

from ..metrics import (
    DRIFT_CHECKED,
    ZERO,
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
    n, interval = bench.n, setting("BENCH_DRIFT_INTERVAL")
    stopped = stop_operator(bench.op) if bench.op else 0.0
    bench.op = None
    api0 = api_requests(bench.kube)
    bench.op = op = start_operator([NS_MAIN], setting("BENCH_WRITE_RATE"), interval, "restart")
    base = ZERO
    t_ready = op.ready_after
    log(f"restart: waiting until all {n} connections were checked")
    t_caught, _ = op.wait(lambda s: s.total(DRIFT_CHECKED) >= n, timeout=600, what="catch-up", poll=0.1)
    after = op.settle(reads_continue=True)
    api1 = api_requests(bench.kube)
    ssm = diff_counts(after.ssm_by_op(), base.ssm_by_op())
    writes = api_writes(api1, api0)
    bench.record(
        "restart",
        {"N": n, **op.settings},
        {
            "shutdown_seconds": stopped,
            "ready_seconds_from_start": round(t_ready, 2),
            "caught_up_seconds_from_start": round(t_caught, 2),
            "ssm_calls": ssm,
            "ssm_writes": sum(v for k, v in ssm.items() if k.startswith("PutParameter")),
            "api_writes": writes,
            "api_reads": api_reads(api1, api0),
            "reconciles": reconcile_stats(after, base),
            "operator": op.proc_status(),
        },
        {"ssm_calls": f"{-(-n // 10)} GetParameters (10 names each), no GetParameter", "ssm_writes": 0, "api_writes": "none"},
    )


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    return [
        ("caught up", f"{f['caught_up_seconds_from_start']} s after process start"),
        ("SSM calls", fmt_counts(f["ssm_calls"])),
        ("API writes", fmt_counts(f["api_writes"])),
    ]
