"""Figures, statistics and the Markdown table of results."""

import datetime
import hashlib
import os
import platform
import statistics

from .settings import SETTINGS, setting


def ssm_writes(counts):
    """SSM calls that change something, in a diff_counts of ssm_by_op."""
    return sum(v for k, v in counts.items() if k.split(":")[0] in ("PutParameter", "DeleteParameter", "AddTagsToResource"))


def latency_stats(sorted_ms):
    if not sorted_ms:
        return {"count": 0}
    return {
        "count": len(sorted_ms),
        "p50": round(pct(sorted_ms, 50), 1),
        "p95": round(pct(sorted_ms, 95), 1),
        "p99": round(pct(sorted_ms, 99), 1),
        "max": round(sorted_ms[-1], 1),
        "mean": round(statistics.mean(sorted_ms), 1),
    }


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def per(counts, n):
    return {k: round(v / n, 3) for k, v in counts.items()}


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_mib": mem,
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def all_settings():
    return {name: setting(name) for name in SETTINGS}


def fmt_counts(d):
    return ", ".join(f"{v:g} {k}" for k, v in d.items()) or "none"


def decrypting(ssm):
    """The decrypting reads (GetParameter, any outcome) among SSM call counts by operation."""
    return sum(v for k, v in ssm.items() if k.split(":")[0] == "GetParameter")


def fmt_latency(lat):
    """p50/p95/p99/max of latency_stats, for a table row."""
    return f"{lat.get('p50')}/{lat.get('p95')}/{lat.get('p99')}/{lat.get('max')} ms"


VERDICT = {True: "met", False: "NOT met", None: "not measured"}
