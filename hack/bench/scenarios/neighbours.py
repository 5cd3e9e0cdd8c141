"""The neighbours: a noisy namespace (A) holds SHARED served connections that all name one
Secret, REFUSED more connections beyond its tier's limit, and an annotate loop on that Secret;
a quiet namespace (B) rotates its Secrets one at a time meanwhile. What the refused connections
cost at rest, what the annotations cost, and B's rotation latency, against the goals of issue
6/7 (docs/performance.md): 0 SSM calls by refused connections at rest, and B's rotation p99
under 200 ms.
"""

import threading
import time

from ..fixtures import create_connections, ensure_tier_namespace
from ..metrics import ZERO, diff_counts
from ..operator import operator_settings, start_operator, stop_operator
from ..report import VERDICT, decrypting, fmt_counts, fmt_latency, latency_stats, ssm_writes
from ..settings import NS_NOISY, NS_QUIET, log, setting

CONNECTIONS = "vault_connection_operator_connections"
GOALS = {
    "refused_at_rest": "refused connections at rest: 0 SSM calls beyond the drift sweep's GetParameters",
    "quiet_rotation_p99": "rotation p99 in the quiet namespace while the noisy one runs: < 200 ms",
}


def annotate_loop(bench, period, stop):
    """Touches the noisy namespace's shared Secret every `period` s until `stop`; returns how many."""
    count = [0]

    def loop():
        while not stop.is_set():
            count[0] += 1
            bench.kube.merge_patch(
                f"/api/v1/namespaces/{NS_NOISY}/secrets/shared",
                {"metadata": {"annotations": {"bench.vaultconnections.io/touch": str(count[0])}}},
            )
            stop.wait(period)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread, count


def run(bench):
    refused, shared = setting("BENCH_NEIGHBOURS_REFUSED"), setting("BENCH_NEIGHBOURS_SHARED")
    m, period = setting("BENCH_NEIGHBOURS_ROTATIONS"), setting("BENCH_NEIGHBOURS_ANNOTATE_MS") / 1000
    rest = setting("BENCH_NEIGHBOURS_REST_SECONDS")
    rate, interval = setting("BENCH_WRITE_RATE"), setting("BENCH_DRIFT_INTERVAL")
    extra = {"VCO_TIER_LIMITS": f"free=1,team=10,enterprise=unlimited,noisy={shared}"}
    params = {
        "refused": refused,
        "shared": shared,
        "rotations": m,
        "annotate_period_ms": round(period * 1000),
        "rest_seconds": rest,
        **operator_settings(rate, interval, extra),
    }
    figures, goals_met = {}, {k: {"measured": "not measured", "met": None} for k in GOALS}
    op = None
    try:
        ensure_tier_namespace(bench.kube, NS_NOISY, "noisy")
        ensure_tier_namespace(bench.kube, NS_QUIET, "enterprise")
        log(f"neighbours: {shared} + {refused} connections on one Secret in {NS_NOISY}, {m} in {NS_QUIET}")
        create_connections(bench.kube, NS_QUIET, m)
        # The served ones first: the tier admits the oldest.
        create_connections(bench.kube, NS_NOISY, shared, secret="shared")
        create_connections(bench.kube, NS_NOISY, refused, first=shared, secret="shared")
        op = start_operator([NS_NOISY, NS_QUIET], rate, interval, "neighbours", extra)
        want_ready = shared + m
        t, _ = op.wait(
            lambda s: s.total(CONNECTIONS, status="True") >= want_ready
            and s.total(CONNECTIONS, reason="TierLimitExceeded") >= refused,
            timeout=max(600, 3 * (shared + refused + m)),
            what="served Ready and the rest refused",
            poll=0.5,
        )
        figures["settled_seconds"] = round(t, 1)

        # 1. at rest: what do the refused connections cost?
        op.settle(reads_continue=True)
        before = op.metrics()
        time.sleep(rest)
        after = op.metrics()
        at_rest = diff_counts(after.ssm_by_op(), before.ssm_by_op())
        beyond_sweep = {k: v for k, v in at_rest.items() if k != "GetParameters"}
        figures["at_rest"] = {"ssm_calls": at_rest, "beyond_the_sweep": beyond_sweep}
        goals_met["refused_at_rest"] = {
            "measured": f"{sum(beyond_sweep.values())} calls in {rest} s ({at_rest or 'none'})",
            "met": not beyond_sweep,
        }

        # 2. the noisy namespace touches its shared Secret while the quiet one rotates.
        stop = threading.Event()
        before, t0 = op.metrics(), time.monotonic()
        thread, touches = annotate_loop(bench, period, stop)
        try:
            lat, spacing, timed_out = bench.rotate_secrets(op, NS_QUIET, range(m), give_up=True)
        finally:
            stop.set()
            thread.join()
        window = time.monotonic() - t0
        after = op.settle(reads_continue=True)
        ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
        lat.sort()
        stats = latency_stats(lat)
        figures["noisy"] = {
            "window_seconds": round(window, 1),
            "annotations": touches[0],
            "ssm_calls": ssm,
            "ssm_writes": ssm_writes(ssm),
            "decrypting_reads": decrypting(ssm),
            "reconciles": int(after.reconciles() - before.reconciles()),
            "quiet_rotations": len(lat) + timed_out,
            "quiet_not_stored_within_60s": timed_out,
            "quiet_latency_ms": stats,
            "min_spacing_ms": round(spacing * 1000),
        }
        if timed_out:
            goals_met["quiet_rotation_p99"] = {"measured": "a rotation not stored within 60 s", "met": False}
        elif stats["count"]:
            goals_met["quiet_rotation_p99"] = {
                "measured": f"p99 {stats['p99']} ms over {stats['count']} rotations, "
                f"{touches[0]} annotations meanwhile",
                "met": stats["p99"] < 200,
            }
        figures["whole_run_ssm_calls"] = diff_counts(after.ssm_by_op(), ZERO.ssm_by_op())
    except BaseException as e:
        figures["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        if op is not None:
            stop_operator(op)
        figures["goals_met"] = goals_met
        bench.record("neighbours", params, figures, GOALS)
        for key, g in goals_met.items():
            verdict = VERDICT[g["met"]]
            log(f"neighbours goal {verdict}: {GOALS[key]} -- measured {g['measured']}")


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    out = []
    if "at_rest" in f:
        out.append(("at rest: SSM calls beyond the sweep", fmt_counts(f["at_rest"]["beyond_the_sweep"])))
    noisy = f.get("noisy")
    if noisy:
        lat = noisy["quiet_latency_ms"]
        out.append((
            "quiet rotation p50/p95/p99/max",
            f"{fmt_latency(lat)} with {noisy['annotations']} annotations meanwhile",
        ))
        out.append(("SSM calls meanwhile, reconciles", f"{fmt_counts(noisy['ssm_calls'])}; {noisy['reconciles']}"))
    return out
