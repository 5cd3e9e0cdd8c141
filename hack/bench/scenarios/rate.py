"""The rate: a smaller create at AWS's default write quota: is it within 10% of N/rate?
"""

from ..fixtures import create_connections, ensure_namespace
from ..metrics import ZERO, api_requests, api_writes, diff_counts
from ..operator import start_operator, stop_operator
from ..report import fmt_counts
from ..settings import NS_RATE, log, setting


def run(bench):
    n, rate = setting("BENCH_RATE_N"), setting("BENCH_RATE")
    if bench.op:
        stop_operator(bench.op)
        bench.op = None
    ensure_namespace(bench.kube, NS_RATE)
    log(f"rate: creating {n} connections in {NS_RATE}")
    create_connections(bench.kube, NS_RATE, n)
    api0 = api_requests(bench.kube)
    bench.rate_op = op = start_operator([NS_RATE], rate, 3600, "rate")
    base = ZERO
    t, _ = op.wait(lambda s: s.ready() >= n, timeout=max(600, 3 * n / rate), what="all Ready", poll=0.5)
    after = op.settle()
    api1 = api_requests(bench.kube)
    ssm = diff_counts(after.ssm_by_op(), base.ssm_by_op())
    floor = n / rate
    burst = max(1, int(rate))
    bench.record(
        "rate",
        {"N": n, **op.settings},
        {
            "all_ready_seconds": round(t, 1),
            "write_rate_floor_seconds": round(floor, 1),
            "write_rate_floor_after_burst_seconds": round((n - burst) / rate, 1),
            "ready_vs_floor": round(t / floor, 3),
            "within_10_percent": t <= 1.1 * floor,
            "ssm_calls": ssm,
            "api_writes": api_writes(api1, api0),
            "operator": op.proc_status(),
        },
        {"all_ready_seconds": f"<= {1.1 * floor:.0f} s (within 10% of N/rate)"},
    )


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    return [
        ("all Ready", f"{f['all_ready_seconds']} s = {f['ready_vs_floor']} x N/rate"),
        ("SSM calls", fmt_counts(f["ssm_calls"])),
    ]
