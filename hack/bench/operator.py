"""The operator process under measurement: start, wait, settle, memory and CPU, stop."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

from .metrics import FAMILY, OP_METRICS, OpSnapshot, parse_metrics
from .settings import BIN, ENV, OUT_DIR, PREFIX, STATE, log, setting


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLK_TCK = os.sysconf("SC_CLK_TCK")


def operator_settings(write_rate, drift_interval, extra_env=None):
    """The settings of an operator process that figures are reported with."""
    return {
        "VCO_SSM_WRITE_RATE": write_rate,
        "VCO_DRIFT_CHECK_INTERVAL": f"{drift_interval}s",
        "VCO_CONCURRENCY": setting("BENCH_CONCURRENCY"),
        "VCO_SSM_READ_RATE": setting("BENCH_READ_RATE"),
        **(extra_env or {}),
    }


class Operator:
    """One operator process, started fresh; stopped with SIGTERM."""

    count = 0

    def __init__(self, namespaces, write_rate, drift_interval, label, extra_env=None):
        Operator.count += 1
        self.scrapes = 0
        self.port = free_port()
        self.label = label
        self.log_path = os.path.join(OUT_DIR, "logs", f"operator-{Operator.count}-{label}.log")
        env = {**os.environ, **ENV.child_env()}
        env.update(
            {
                "VCO_NAMESPACES": ",".join(namespaces),
                "VCO_SSM_PREFIX": PREFIX,
                "VCO_CLUSTER_NAME": "default",
                "VCO_METRICS_ADDR": f"127.0.0.1:{self.port}",
                "VCO_SSM_WRITE_RATE": str(write_rate),
                "VCO_DRIFT_CHECK_INTERVAL": f"{drift_interval}s",
                "VCO_CONCURRENCY": str(setting("BENCH_CONCURRENCY")),
                "VCO_SSM_READ_RATE": str(setting("BENCH_READ_RATE")),
                "VCO_LOG_FORMAT": "json",
                "VCO_LOG_LEVEL": "info",
            }
        )
        env.update(extra_env or {})
        self.settings = operator_settings(write_rate, drift_interval, extra_env)
        logf = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [BIN, "run"], env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True
        )
        logf.close()
        with open(os.path.join(STATE, "operator.pid"), "w") as f:
            f.write(str(self.proc.pid))
        self.url = f"http://127.0.0.1:{self.port}"
        self.wait_http("/readyz", 30)
        self.ready_after = time.monotonic() - self.started

    def wait_http(self, path, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited ({self.proc.returncode}); log: {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"operator {path} not OK within {seconds}s; log: {self.log_path}")

    def metrics(self):
        # Each scrape costs the operator CPU (about 1 ms at N=1000): count them, so CPU figures
        # can be read with the harness's share in mind.
        self.scrapes += 1
        for attempt in range(5):
            try:
                with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
                    text = r.read().decode()
                    return OpSnapshot(parse_metrics(text, OP_METRICS), frozenset(FAMILY.findall(text)))
            except OSError:
                if attempt == 4:
                    raise
                time.sleep(0.2)

    def proc_status(self):
        """RSS now and peak (MiB) and CPU seconds (user + system) of the process."""
        pid = self.proc.pid
        fields = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        # After the ")" of comm: state is field 3, utime field 14, stime field 15 (1-based).
        utime, stime = int(stat[11]), int(stat[12])
        kib = lambda k: int(fields[k].split()[0])  # noqa: E731
        return {
            "rss_mib": round(kib("VmRSS") / 1024, 2),
            "peak_rss_mib": round(kib("VmHWM") / 1024, 2),
            "cpu_seconds": round((utime + stime) / CLK_TCK, 2),
            "threads": int(fields["Threads"]),
        }

    def memory_kib(self):
        """VmRSS and VmHWM of the process in KiB, as /proc/PID/status gives them."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
        return out

    def wait(self, predicate, timeout, what, poll=0.1):
        """Polls the operator's metrics until predicate(snapshot) holds; returns the seconds since
        the process started, and the snapshot."""
        start = time.monotonic()
        while True:
            snap = self.metrics()
            if predicate(snap):
                return time.monotonic() - self.started, snap
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited while waiting for {what}; log: {self.log_path}")
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"timed out after {timeout}s waiting for {what}; log: {self.log_path}")
            time.sleep(poll)

    def settle(self, quiet=3.0, timeout=120, reads_continue=False):
        """Waits until no SSM call or reconcile happened for `quiet` seconds (with
        `reads_continue`, no SSM write: the operator spreads its first drift checks over the
        whole interval, so after a start-up it is never quiet); returns the snapshot."""
        start = time.monotonic()
        measure = (lambda m: m.writes()) if reads_continue else (lambda m: m.activity())
        last, since = measure(self.metrics()), time.monotonic()
        while time.monotonic() - since < quiet:
            time.sleep(0.25)
            now = measure(self.metrics())
            if now != last:
                last, since = now, time.monotonic()
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"operator still busy after {timeout}s; log: {self.log_path}")
        return self.metrics()

    def stop(self):
        """SIGTERM, then wait; returns seconds to exit."""
        if self.proc.poll() is not None:
            return 0.0
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log(f"operator pid {self.proc.pid} ignored SIGTERM for 30s; killing")
            self.proc.kill()
            self.proc.wait()
        try:
            os.remove(os.path.join(STATE, "operator.pid"))
        except FileNotFoundError:
            pass
        return round(time.monotonic() - start, 2)


RUNNING = []


class ReconciledLog:
    """The connections an operator's JSON log says it reconciled (info lines "reconciled" with
    namespace and name): how the fleet scenario tells that a restarted operator without
    vault_connection_operator_drift_checked_total has checked every connection once. Neither
    the reconcile count nor the GetParameter count tells it: drift checks of connections already
    checked run in between, and some skip SSM."""

    def __init__(self, path):
        self.path, self.offset, self.rest, self.names = path, 0, b"", set()

    def update(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            if b'"reconciled"' not in line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("message") == "reconciled" and r.get("name"):
                self.names.add((r.get("namespace"), r["name"]))
        return len(self.names)


def start_operator(*args, **kwargs):
    op = Operator(*args, **kwargs)
    RUNNING.append(op)
    return op


def stop_operator(op):
    took = op.stop()
    if op in RUNNING:
        RUNNING.remove(op)
    return took
