"""The create: N connections exist, a fresh operator starts; time until all Ready.
"""

import time

from ..fixtures import create_connections, ensure_namespace
from ..metrics import ZERO, api_reads, api_requests, api_writes, diff_counts, reconcile_stats
from ..operator import start_operator
from ..report import fmt_counts, per
from ..settings import NS_MAIN, log, setting


def run(bench):
    n, rate = bench.n, setting("BENCH_WRITE_RATE")
    ensure_namespace(bench.kube, NS_MAIN)
    log(f"create: creating {n} Secrets and VaultConnections in {NS_MAIN} (operator not running)")
    took_objects = create_connections(bench.kube, NS_MAIN, n)
    bench.created = True
    api0 = api_requests(bench.kube)
    bench.op = start_operator([NS_MAIN], rate, 3600, "create")
    base = ZERO  # a fresh process: its counters start at zero
    log(f"create: operator started; waiting until {n} connections are Ready")
    # From the process start: the objects existed before it.
    t_ready, _ = bench.op.wait(lambda s: s.ready() >= n, timeout=max(600, 3 * n / rate), what="all Ready", poll=0.5)
    after = bench.op.settle()
    t_settled = time.monotonic() - bench.op.started
    proc = bench.op.proc_status()
    api1 = api_requests(bench.kube)
    ssm = diff_counts(after.ssm_by_op(), base.ssm_by_op())
    writes = api_writes(api1, api0)
    burst = max(1, int(rate))  # the operator's token bucket starts full
    floor = max(0.0, (n - burst) / rate)
    bench.record(
        "create",
        {"N": n, **bench.op.settings, "provider": "onepassword"},
        {
            "objects_created_seconds": round(took_objects, 1),
            "all_ready_seconds": round(t_ready, 1),
            "quiet_after_seconds": round(t_settled, 1),
            "write_rate_floor_seconds": round(n / rate, 1),
            "write_rate_floor_after_burst_seconds": round(floor, 1),
            "ready_vs_floor": round(t_ready / (n / rate), 3),
            "ssm_calls": ssm,
            "ssm_calls_per_connection": per(ssm, n),
            "api_writes": writes,
            "api_writes_per_connection": per(writes, n),
            "api_reads": api_reads(api1, api0),
            "reconciles": reconcile_stats(after, base),
            "operator": proc,
            "harness_scrapes_of_operator_metrics": bench.op.scrapes,
        },
        {
            "ssm_calls_per_connection": "1 GetParameter (not found) + 1 PutParameter",
            "api_writes_per_connection": "1 PATCH (finalizer) + 1 PATCH status + 1 CREATE event",
            "all_ready_seconds": f">= {floor:.0f} s ((N - {burst} burst) / rate)",
        },
    )


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    return [
        ("all Ready", f"{f['all_ready_seconds']} s (floor N/rate {f['write_rate_floor_seconds']} s)"),
        ("SSM calls / connection", fmt_counts(f["ssm_calls_per_connection"])),
        ("API writes / connection", fmt_counts(f["api_writes_per_connection"])),
        ("operator peak RSS, CPU", f"{f['operator']['peak_rss_mib']} MiB, {f['operator']['cpu_seconds']} s"),
    ]
