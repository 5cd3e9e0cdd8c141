"""The fleet scenario's goals (docs/performance.md, section 6) and how they are judged."""

from .report import fmt_counts


# The goals of the fleet-scale work, and how the fleet scenario's figures are judged against them.
FLEET_GOALS = {
    "idle_ssm_calls": "at rest: <= 0.1 SSM calls per connection per drift interval, none decrypting (GetParameter)",
    "idle_api_reads": "at rest: 0 Kubernetes reads",
    "restart_writes": "restart: 0 writes (Kubernetes and SSM)",
    "restart_secret_reads": "restart: 0 Secret data reads",
    "restart_ssm_calls": "restart: <= N/10 SSM calls until caught up",
    "restart_caught_up": "restart: caught up <= 60 s at the default read rate (20/s)",
    "memory_per_connection": "<= 2 KiB RSS per connection",
    "memory_at_10000": "N = 10,000 under 64 MiB RSS",
    "rotation_p99": "rotation on the idle fleet: latency p99 < 200 ms",
    "relist_peak": "a forced relist (410 Gone): peak RSS <= 1.3 x RSS at rest, no decrypting read, no write",
}


def fleet_goals(f, n, read_rate):
    """{goal: {"measured", "met"}} from the fleet's figures; met is None where a phase did not run."""
    out = {key: {"measured": "not measured", "met": None} for key in FLEET_GOALS}
    idle, restart, mem, rot = f.get("idle"), f.get("restart"), f.get("memory"), f.get("rotation")
    relist = f.get("relist")
    if idle:
        calls, dec = idle["ssm_calls_total_per_connection_per_interval"], idle["decrypting_reads"]
        out["idle_ssm_calls"] = {
            "measured": f"{calls} calls per connection per interval, {dec} GetParameter",
            "met": calls <= 0.1 and dec == 0,
        }
        reads = sum(idle["api_reads"].values())
        out["idle_api_reads"] = {"measured": f"{reads} reads ({fmt_counts(idle['api_reads'])})", "met": reads == 0}
    if restart:
        kube_w, ssm_w = sum(restart["api_writes"].values()), restart["ssm_writes"]
        out["restart_writes"] = {
            "measured": f"{kube_w} Kubernetes writes, {ssm_w} SSM writes",
            "met": kube_w == 0 and ssm_w == 0,
        }
        data = restart["secret_data_reads_estimate"]
        out["restart_secret_reads"] = {
            "measured": f"about {data} Secret data reads ({fmt_counts(restart['secret_reads'])}; the initial "
            "list of each Secret watch opened is taken as metadata-only, which the API server's metrics "
            "cannot confirm)",
            "met": data == 0,
        }
        calls = restart["ssm_calls_total"]
        out["restart_ssm_calls"] = {
            "measured": f"{calls} SSM calls (N/10 = {n / 10:g})"
            + ("" if restart["caught_up"] else ", not caught up"),
            "met": restart["caught_up"] and calls <= n / 10,
        }
        t = restart["caught_up_seconds_from_start"]
        note = "" if read_rate == 20 else f"; read rate {read_rate}/s, not the default"
        out["restart_caught_up"] = {
            "measured": (f"{t} s after process start" if t is not None else "not caught up")
            + f" ({'drift_checked_total' if 'drift_checked' in restart else 'fallback definition'}{note})",
            "met": t is not None and t <= 60,
        }
    if mem:
        kib = mem["kib_per_connection"]
        out["memory_per_connection"] = {"measured": f"{kib} KiB per connection", "met": kib <= 2}
        if n >= 10000:
            out["memory_at_10000"] = {
                "measured": f"{mem['rss_mib']} MiB at N = {n} (measured)",
                "met": mem["rss_mib"] < 64,
            }
        else:
            out["memory_at_10000"] = {
                "measured": f"{mem['projected_rss_mib_at_10000']} MiB projected from N = {n} "
                f"(baseline {mem['baseline_rss_mib']} MiB + 10,000 x {kib} KiB)",
                "met": mem["projected_rss_mib_at_10000"] < 64,
            }
    if rot:
        lat = rot["latency_ms"]
        if rot["not_stored_within_60s"]:
            out["rotation_p99"] = {"measured": f"a rotation not stored within 60 s after {lat['count']} were", "met": False}
        elif lat["count"]:
            out["rotation_p99"] = {
                "measured": f"p99 {lat['p99']} ms over {lat['count']} rotations",
                "met": lat["p99"] < 200,
            }
    if relist and relist["relisted"]:
        ratio, dec, w = relist["peak_over_rest"], relist["decrypting_reads"], relist["ssm_writes"]
        out["relist_peak"] = {
            "measured": f"peak {relist['peak_rss_mib']} MiB = {ratio} x {relist['rss_at_rest_mib']} MiB at rest, "
            f"{dec} GetParameter, {w} SSM writes",
            "met": ratio <= 1.3 and dec == 0 and w == 0,
        }
    elif relist:
        out["relist_peak"] = {"measured": "the caches did not list again within 600 s", "met": False}
    return out
