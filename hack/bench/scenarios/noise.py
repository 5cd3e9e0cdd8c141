"""The noise: operator RSS over N connections, without and then with unrelated Secrets.
"""

import time

from ..fixtures import create_noise
from ..metrics import DRIFT_CHECKED
from ..operator import start_operator, stop_operator
from ..settings import NS_MAIN, log, setting


def run(bench):
    bench.need_main()
    n, k, kib = bench.n, setting("BENCH_NOISE"), setting("BENCH_NOISE_KIB")
    if bench.op:
        stop_operator(bench.op)
        bench.op = None

    def measure(label):
        op = start_operator([NS_MAIN], setting("BENCH_WRITE_RATE"), 3600, label)
        t, _ = op.wait(lambda s: s.total(DRIFT_CHECKED) >= n, timeout=600, what="catch-up")
        op.settle()
        samples = []
        for _ in range(10):
            samples.append(op.proc_status())
            time.sleep(0.5)
        puts = op.metrics().ssm("PutParameter")
        stop_operator(op)
        return {
            "rss_mib": max(s["rss_mib"] for s in samples),
            "peak_rss_mib": samples[-1]["peak_rss_mib"],
            "cpu_seconds": samples[-1]["cpu_seconds"],
            "caught_up_seconds": round(t, 2),
            "ssm_writes": int(puts),
        }

    log("noise: measuring a fresh operator without noise")
    quiet = measure("noise-baseline")
    log(f"noise: creating {k} unlabelled Secrets of {kib} KiB in {NS_MAIN}")
    took = create_noise(bench.kube, NS_MAIN, k, kib)
    log(f"noise: created in {took:.0f}s; measuring a fresh operator with noise")
    noisy = measure("noise")
    bench.record(
        "noise",
        {"N": n, "noise_secrets": k, "noise_kib": kib, "noise_namespace": NS_MAIN},
        {
            "without_noise": quiet,
            "with_noise": noisy,
            "noise_created_seconds": round(took, 1),
            "rss_added_mib": round(noisy["rss_mib"] - quiet["rss_mib"], 2),
            "peak_rss_added_mib": round(noisy["peak_rss_mib"] - quiet["peak_rss_mib"], 2),
        },
        {"rss_added_mib": "< 5"},
    )


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    return [
        ("RSS without / with noise", f"{f['without_noise']['rss_mib']} / {f['with_noise']['rss_mib']} MiB"),
        ("RSS added by noise", f"{f['rss_added_mib']} MiB (peak {f['peak_rss_added_mib']} MiB)"),
    ]
