"""The drift: parameters changed out of band are repaired by the next drift check.
"""

import time

from ..fixtures import create_connections, ensure_namespace, param_name
from ..metrics import api_requests, api_writes, diff_counts
from ..operator import start_operator, stop_operator
from ..report import fmt_counts, per
from ..settings import NS_DRIFT, log, setting


def run(bench):
    r, interval = setting("BENCH_DRIFT_N"), setting("BENCH_DRIFT_REPAIR_INTERVAL")
    ensure_namespace(bench.kube, NS_DRIFT)
    log(f"drift: creating {r} connections in {NS_DRIFT}")
    create_connections(bench.kube, NS_DRIFT, r)
    # The write rate is not what this measures: let all repairs fit in one check interval.
    op = start_operator([NS_DRIFT], max(10.0, r / (interval / 4)), interval, "drift")
    op.wait(lambda s: s.ready() >= r, timeout=120, what="all Ready")
    # The window runs from here to just after the repairs: one drift check per connection,
    # due 0.9-1.1 intervals after the first sync, and the next one 0.9 intervals later.
    before = op.settle(quiet=1.0)
    api0 = api_requests(bench.kube)
    tampered = {}
    for i in range(r):
        out = bench.ssm.put_parameter(
            Name=param_name(NS_DRIFT, f"conn-{i:05d}"),
            Value="changed out of band",
            Type="SecureString",
            Overwrite=True,
        )
        tampered[i] = out["Version"]
    t0 = time.monotonic()
    lat = []
    for i in range(r):
        while bench.ssm.get_parameter(Name=param_name(NS_DRIFT, f"conn-{i:05d}"))["Parameter"]["Version"] <= tampered[i]:
            if time.monotonic() - t0 > 3 * interval:
                raise RuntimeError(f"drift of conn-{i:05d} not repaired within {3 * interval}s; log: {op.log_path}")
            time.sleep(0.05)
        lat.append(time.monotonic() - t0)
    after = op.settle(quiet=1.0)
    if time.monotonic() - t0 > 1.5 * interval:
        log("drift: the window outlasted the next drift check; per-repair counts include it")
    api1 = api_requests(bench.kube)
    ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
    writes = api_writes(api1, api0)
    stop_operator(op)
    bench.record(
        "drift",
        {"R": r, **op.settings},
        {
            "all_repaired_seconds_after_change": round(max(lat), 2),
            "ssm_calls": ssm,
            "ssm_calls_per_repair": per(ssm, r),
            "api_writes": writes,
            "api_writes_per_repair": per(writes, r),
        },
        {
            "ssm_calls_per_repair": "1 GetParameter + 1 ListTagsForResource + 1 DescribeParameters + 1 PutParameter",
            "api_writes_per_repair": "1 PATCH status + 1 event",
        },
    )


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    return [
        ("SSM calls / repair", fmt_counts(f["ssm_calls_per_repair"])),
        ("API writes / repair", fmt_counts(f["api_writes_per_repair"])),
    ]
