"""The fleet: N connections in a namespace of their own, at fleet scale: created while the operator
is stopped, a restart with nothing changed, some drift intervals at rest, the memory that costs,
and rotations on the idle fleet; against the goals of FLEET_GOALS.
"""

import time

from ..faults import lose_the_watches_place
from ..fixtures import create_connections, ensure_tier_namespace
from ..goals import FLEET_GOALS, fleet_goals
from ..metrics import (
    DRIFT_CHECKED,
    ZERO,
    api_reads,
    api_requests,
    api_writes,
    diff_counts,
    secret_data_reads,
    secret_reads,
)
from ..operator import ReconciledLog, operator_settings, start_operator, stop_operator
from ..report import VERDICT, decrypting, fmt_counts, fmt_latency, latency_stats, per, ssm_writes
from ..settings import FLEET_TIER, FLEET_TIER_LIMITS, NS_FLEET, NS_FLEET_EMPTY, log, setting


RELISTS = "vault_connection_operator_cache_relists_total"


def forced_relist(op, n, poll):
    """RSS at rest, the peak sampled while the operator's three caches list again, the SSM
    calls and reconciles that cost, and how long until every cache had listed."""
    op.settle(reads_continue=True)
    before, rest = op.metrics(), op.memory_kib()["VmRSS"]
    log("fleet: forcing a relist (API server stopped, etcd moved on, API server started)")
    start = time.monotonic()
    lose_the_watches_place()
    peak, listed = rest, None
    while time.monotonic() - start < 600:
        peak = max(peak, op.memory_kib()["VmRSS"])
        snap = op.metrics()
        if listed is None and snap.total(RELISTS) - before.total(RELISTS) >= 3:
            listed = time.monotonic() - start
        if listed is not None and time.monotonic() - start > listed + 10:
            break
        time.sleep(min(poll, 0.2))
    after = op.settle(reads_continue=True)
    peak = max(peak, op.memory_kib()["VmRSS"])
    ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
    return {
        "relisted": listed is not None,
        "all_caches_listed_seconds": None if listed is None else round(listed, 1),
        "rss_at_rest_mib": round(rest / 1024, 2),
        "peak_rss_mib": round(peak / 1024, 2),
        "peak_over_rest": round(peak / rest, 3),
        "ssm_calls": ssm,
        "ssm_writes": ssm_writes(ssm),
        "decrypting_reads": decrypting(ssm),
        "reconciles": int(after.reconciles() - before.reconciles()),
        "relists_by_cache": diff_counts(after.by_label(RELISTS, "cache"), before.by_label(RELISTS, "cache")),
    }


def run(bench):
    n, rate = setting("BENCH_FLEET_N"), setting("BENCH_FLEET_WRITE_RATE")
    interval, intervals = setting("BENCH_FLEET_DRIFT_INTERVAL"), setting("BENCH_FLEET_IDLE_INTERVALS")
    m, read_rate = min(setting("BENCH_FLEET_ROTATIONS"), n), setting("BENCH_READ_RATE")
    timeout = setting("BENCH_FLEET_TIMEOUT") or max(600, round(3 * n / min(rate, read_rate)))
    extra = {"VCO_TIER_LIMITS": FLEET_TIER_LIMITS}
    # Each scrape of the operator's /metrics costs it about 1 ms per 1,000 connections.
    poll = 0.1 if n <= 1000 else 0.5
    params = {
        "N": n,
        "namespace": NS_FLEET,
        "namespace_tier": FLEET_TIER,
        "idle_intervals": intervals,
        "rotations": m,
        "poll_interval_ms": setting("BENCH_POLL_MS"),
        "timeout_seconds": timeout,
        **operator_settings(rate, interval, extra),
    }
    figures = {}
    op = None
    # The API server's counters are global: the operator over NS_MAIN, checking drift every
    # BENCH_DRIFT_INTERVAL, would add its reads (the rate scenario's checks hourly: left).
    if bench.op:
        stop_operator(bench.op)
        bench.op = None
    try:
        for ns in (NS_FLEET, NS_FLEET_EMPTY):
            ensure_tier_namespace(bench.kube, ns, FLEET_TIER)
        figures["baseline"] = baseline = bench.fleet_baseline(rate, interval, extra)

        # 1. create: the objects exist before the operator starts.
        log(f"fleet: creating {n} Secrets and VaultConnections in {NS_FLEET} (operator not running)")
        took_objects = create_connections(bench.kube, NS_FLEET, n)
        api0 = api_requests(bench.kube)
        op = start_operator([NS_FLEET], rate, interval, "fleet-create", extra)
        log(f"fleet: operator started; waiting until {n} connections are Ready (at most {timeout}s)")
        t_ready, _ = op.wait(lambda s: s.ready() >= n, timeout=timeout, what="all Ready", poll=0.5)
        after = op.settle(reads_continue=True)
        api1 = api_requests(bench.kube)
        ssm = diff_counts(after.ssm_by_op(), ZERO.ssm_by_op())
        writes, reads = api_writes(api1, api0), api_reads(api1, api0)
        figures["create"] = {
            "objects_created_seconds": round(took_objects, 1),
            "all_ready_seconds": round(t_ready, 1),
            "write_rate_floor_seconds": round(n / rate, 1),
            "read_rate_floor_seconds": round(n / read_rate, 1),
            "ssm_calls": ssm,
            "ssm_calls_per_connection": per(ssm, n),
            "api_reads": reads,
            "api_reads_per_connection": per(reads, n),
            "api_writes": writes,
            "api_writes_per_connection": per(writes, n),
            "operator": op.proc_status(),
            "harness_scrapes_of_operator_metrics": op.scrapes,
        }
        bench.fleet_log("create", figures["create"])

        # 2. restart: a fresh process over the same, unchanged fleet.
        stopped = stop_operator(op)
        op = None
        text = bench.kube.get("/metrics")
        api0, secrets0 = api_requests(bench.kube, text), secret_reads(text)
        op = start_operator([NS_FLEET], rate, interval, "fleet-restart", extra)
        reconciled = ReconciledLog(op.log_path)
        log(f"fleet: restarted; waiting until all {n} connections were checked (at most {timeout}s)")
        snap, t_caught = None, None
        while True:
            snap = op.metrics()
            if snap.has(DRIFT_CHECKED):
                done = snap.total(DRIFT_CHECKED) >= n
            else:
                done = snap.ready() >= n and reconciled.update() >= n
            if done:
                t_caught = time.monotonic() - op.started
                break
            if op.proc.poll() is not None:
                raise RuntimeError(f"operator exited while catching up; log: {op.log_path}")
            if time.monotonic() - op.started > timeout:
                log(f"fleet: not caught up within {timeout}s; going on with the fleet as it is")
                break
            time.sleep(poll)
        text = bench.kube.get("/metrics")
        api1, secret_delta = api_requests(bench.kube, text), diff_counts(secret_reads(text), secrets0)
        new_metric = snap.has(DRIFT_CHECKED)
        ssm = diff_counts(snap.ssm_by_op(), ZERO.ssm_by_op())
        writes, reads = api_writes(api1, api0), api_reads(api1, api0)
        restart = {
            "caught_up": t_caught is not None,
            "caught_up_definition": (
                f"{DRIFT_CHECKED} (summed over result) reached N"
                if new_metric
                else f"fallback, no {DRIFT_CHECKED}: all N Ready and each of the N connections reconciled "
                "by the fresh process (its log), then no SSM write for 3 s (drift checks go on all the "
                "time, so the process is never wholly quiet)"
            ),
            "shutdown_seconds": stopped,
            "ready_seconds_from_start": round(op.ready_after, 2),
            "caught_up_seconds_from_start": None if t_caught is None else round(t_caught, 2),
            "ssm_calls": ssm,
            "ssm_calls_total": sum(ssm.values()),
            "ssm_writes": ssm_writes(ssm),
            "api_reads": reads,
            "api_writes": writes,
            "secret_reads": secret_delta,
            "secret_data_reads_estimate": secret_data_reads(secret_delta, n),
            "operator": op.proc_status(),
        }
        if new_metric:
            restart["drift_checked"] = diff_counts(snap.by_label(DRIFT_CHECKED, "result"), {})
        else:
            restart["connections_reconciled"] = reconciled.update()
            restart["reconciles"] = int(snap.reconciles())
            if t_caught is not None:
                settled = op.settle(reads_continue=True)
                restart["ssm_writes_while_settling"] = int(settled.writes() - snap.writes())
        figures["restart"] = restart
        bench.fleet_log("restart", restart)

        # 3. idle: some drift intervals with nothing changing.
        op.settle(reads_continue=True)
        window = intervals * interval
        log(f"fleet: idle for {intervals} drift intervals ({window}s)")
        since_start = time.monotonic() - op.started
        before, api0, proc0 = op.metrics(), api_requests(bench.kube), op.proc_status()
        time.sleep(window)
        after, api1, proc1 = op.metrics(), api_requests(bench.kube), op.proc_status()
        ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
        writes, reads = api_writes(api1, api0), api_reads(api1, api0)
        units = n * intervals  # connection-intervals
        decrypting_reads = decrypting(ssm)
        idle = {
            "window_seconds": window,
            "window_starts_after_operator_start_s": round(since_start, 1),
            "ssm_calls": ssm,
            "ssm_calls_per_connection_per_interval": per(ssm, units),
            "ssm_calls_total_per_connection_per_interval": round(sum(ssm.values()) / units, 4),
            "decrypting_reads": decrypting_reads,
            "decrypting_reads_per_connection_per_interval": round(decrypting_reads / units, 4),
            # With one GetParameter per check, the read rate caps what the checks can do.
            "read_rate_cap_per_connection_per_interval": round(read_rate * interval / n, 4),
            "api_reads": reads,
            "api_reads_per_connection_per_interval": per(reads, units),
            "api_writes": writes,
            "api_writes_per_connection_per_interval": per(writes, units),
            "operator_cpu_seconds": round(proc1["cpu_seconds"] - proc0["cpu_seconds"], 2),
        }
        if after.has(DRIFT_CHECKED):
            idle["drift_checked"] = diff_counts(
                after.by_label(DRIFT_CHECKED, "result"), before.by_label(DRIFT_CHECKED, "result")
            )
        figures["idle"] = idle
        bench.fleet_log("idle", idle)

        # 4. memory after idle, against the baseline of an operator with no connections.
        mem = op.memory_kib()
        per_conn = (mem["VmRSS"] - baseline["rss_kib"]) / n
        figures["memory"] = {
            "rss_mib": round(mem["VmRSS"] / 1024, 2),
            "peak_rss_mib": round(mem["VmHWM"] / 1024, 2),
            "baseline_rss_mib": round(baseline["rss_kib"] / 1024, 2),
            "kib_per_connection": round(per_conn, 2),
            "projected_rss_mib_at_10000": round((baseline["rss_kib"] + 10000 * per_conn) / 1024, 1),
        }
        bench.fleet_log("memory", figures["memory"])

        # 5. rotations on the idle fleet, one at a time, as in the rotate scenario.
        before, api0 = op.metrics(), api_requests(bench.kube)
        step = max(1, n // m)
        log(f"fleet: rotating {m} Secrets one at a time on the idle fleet")
        lat, spacing, timed_out = bench.rotate_secrets(op, NS_FLEET, [k * step for k in range(m)], give_up=True)
        after, api1 = op.settle(reads_continue=True), api_requests(bench.kube)
        ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
        lat.sort()
        figures["rotation"] = {
            "rotations": len(lat) + timed_out,
            "not_stored_within_60s": timed_out,
            "min_spacing_ms": round(spacing * 1000),
            "latency_ms": latency_stats(lat),
            # Drift checks go on meanwhile: reads here are not all the rotations'.
            "ssm_calls_during_rotations": ssm,
            "ssm_writes_per_rotation": round(ssm_writes(ssm) / max(1, len(lat) + timed_out), 3),
            "api_writes": api_writes(api1, api0),
        }
        bench.fleet_log("rotation", figures["rotation"])

        # 6. a forced relist: the API server stops, etcd moves on behind its back, and every
        # watch resumed afterwards is answered 410 Gone and lists again. Peak RSS meanwhile.
        figures["relist"] = forced_relist(op, n, poll)
        bench.fleet_log("relist", figures["relist"])
        stop_operator(op)
        op = None
    except BaseException as e:
        figures["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        if op is not None:
            stop_operator(op)
        figures["goals_met"] = fleet_goals(figures, n, read_rate)
        bench.record("fleet", params, figures, FLEET_GOALS)
        for key, g in figures["goals_met"].items():
            verdict = VERDICT[g["met"]]
            log(f"fleet goal {verdict}: {FLEET_GOALS[key]} -- measured {g['measured']}")


def rows(f):
    """The figures of a run, as rows of the Markdown table: (figure, value)."""
    out = []
    c, rs, i, mem, rot = (f.get(k) for k in ("create", "restart", "idle", "memory", "rotation"))
    if c:
        out.append(("create: all Ready", f"{c['all_ready_seconds']} s after process start"))
        out.append(("create: SSM calls / connection", fmt_counts(c["ssm_calls_per_connection"])))
        out.append((
            "create: API reads / writes per connection",
            f"{fmt_counts(c['api_reads_per_connection'])} / {fmt_counts(c['api_writes_per_connection'])}",
        ))
    if rs:
        t = rs["caught_up_seconds_from_start"]
        caught = f"{t} s after process start" if t is not None else "not caught up"
        out.append(("restart: caught up", f"{caught} ({rs['caught_up_definition']})"))
        out.append(("restart: SSM calls", fmt_counts(rs["ssm_calls"])))
        out.append(("restart: API reads / writes", f"{fmt_counts(rs['api_reads'])} / {fmt_counts(rs['api_writes'])}"))
    if i:
        out.append((
            "idle: SSM calls / connection / interval",
            f"{fmt_counts(i['ssm_calls_per_connection_per_interval'])} "
            f"(GetParameter: {i['decrypting_reads_per_connection_per_interval']})",
        ))
        out.append((
            "idle: API reads / writes per connection / interval",
            f"{fmt_counts(i['api_reads_per_connection_per_interval'])} / "
            f"{fmt_counts(i['api_writes_per_connection_per_interval'])}",
        ))
    if mem:
        out.append((
            "memory: RSS, peak, baseline",
            f"{mem['rss_mib']}, {mem['peak_rss_mib']}, {mem['baseline_rss_mib']} MiB; "
            f"{mem['kib_per_connection']} KiB / connection",
        ))
    if rot:
        lat = rot["latency_ms"]
        late = " (one not stored within 60 s)" if rot["not_stored_within_60s"] else ""
        out.append((
            "rotation: p50/p95/p99/max",
            f"{fmt_latency(lat)}{late}",
        ))
    rl = f.get("relist")
    if rl:
        out.append((
            "forced relist: RSS at rest, peak",
            f"{rl['rss_at_rest_mib']}, {rl['peak_rss_mib']} MiB ({rl['peak_over_rest']} x); "
            f"all caches listed in {rl['all_caches_listed_seconds']} s",
        ))
        out.append(("forced relist: SSM calls, reconciles", f"{fmt_counts(rl['ssm_calls'])}; {rl['reconciles']}"))
    return out
