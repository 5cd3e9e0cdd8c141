"""The delete: every connection of the rate scenario deleted; parameters removed.
"""

import time

from ..kube import parallel
from ..metrics import api_requests, api_writes, diff_counts
from ..operator import stop_operator
from ..report import fmt_counts, per
from ..settings import NS_RATE, PREFIX, setting


def run(bench):
    op = bench.need_rate()
    n = setting("BENCH_RATE_N")
    before = op.settle()
    api0 = api_requests(bench.kube)
    start = time.monotonic()
    parallel(
        lambda i: bench.kube.delete(
            f"/apis/vaultconnections.io/v1alpha1/namespaces/{NS_RATE}/vaultconnections/conn-{i:05d}"
        ),
        range(n),
    )
    deadline = start + 300
    while True:
        left = len(bench.kube.get(f"/apis/vaultconnections.io/v1alpha1/namespaces/{NS_RATE}/vaultconnections")["items"])
        if left == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} connections still present after 300s; log: {op.log_path}")
        time.sleep(0.2)
    took = time.monotonic() - start
    after = op.settle()
    api1 = api_requests(bench.kube)
    ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
    # The harness itself listed vaultconnections while waiting: reads are not reported here.
    writes = api_writes(api1, api0, harness={"DELETE vaultconnections": n})
    left = bench.ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": [f"{PREFIX}/default/{NS_RATE}/"]}]
    )["Parameters"]
    bench.record(
        "delete",
        {"N": n, **op.settings},
        {
            "all_gone_seconds": round(took, 2),
            "parameters_left": len(left),
            "ssm_calls": ssm,
            "ssm_calls_per_connection": per(ssm, n),
            "api_writes": writes,
            "api_writes_per_connection": per(writes, n),
        },
        {"ssm_calls_per_connection": "1 ListTagsForResource + 1 DeleteParameter", "parameters_left": 0},
    )
    stop_operator(op)
    bench.rate_op = None


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    return [
        ("SSM calls / connection", fmt_counts(f["ssm_calls_per_connection"])),
        ("API writes / connection", fmt_counts(f["api_writes_per_connection"])),
        ("parameters left", str(f["parameters_left"])),
    ]
