"""Benchmark driver for vault-connection-operator; hack/bench.sh prepares its environment.

Runs the scenarios of docs/performance.md against a private test environment and the release
build of the operator, reads the operator's own /metrics, the kube-apiserver's /metrics and
/proc/PID of the operator, writes target/bench/results.json and prints a Markdown table.

Standard library only, plus boto3 (present in the moto virtualenv of hack/testenv.sh).
Configuration comes from environment variables (see SETTINGS below); bench.sh sets them.
"""

import base64
import concurrent.futures
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import boto3

# ---- settings -------------------------------------------------------------------------------

SETTINGS = {
    # name: (default, meaning)
    "BENCH_N": (1000, "connections in the create, restart, idle and noise scenarios"),
    "BENCH_WRITE_RATE": (10.0, "VCO_SSM_WRITE_RATE of the operator in the create scenario"),
    "BENCH_ROTATIONS": (50, "Secrets rotated one at a time in the rotate scenario"),
    "BENCH_IDLE_SECONDS": (120, "length of the idle window"),
    "BENCH_DRIFT_INTERVAL": (60, "VCO_DRIFT_CHECK_INTERVAL (seconds) in the restart and idle scenarios"),
    "BENCH_NOISE": (10000, "unrelated, unlabelled Secrets in the noise scenario"),
    "BENCH_NOISE_KIB": (10, "size of each noise Secret in KiB"),
    "BENCH_RATE_N": (150, "connections in the write-rate scenario"),
    "BENCH_RATE": (3.0, "VCO_SSM_WRITE_RATE in the write-rate scenario (AWS's default quota)"),
    "BENCH_DRIFT_N": (20, "connections whose parameters are changed out of band in the drift scenario"),
    "BENCH_DRIFT_REPAIR_INTERVAL": (20, "VCO_DRIFT_CHECK_INTERVAL (seconds) in the drift scenario"),
    "BENCH_CONCURRENCY": (4, "VCO_CONCURRENCY of the operator"),
    "BENCH_READ_RATE": (20.0, "VCO_SSM_READ_RATE of the operator (its default)"),
    "BENCH_POLL_MS": (20, "how often the rotate scenario polls GetParameter for the new version"),
    "BENCH_FLEET_N": (10000, "connections in the fleet scenario (its own namespace)"),
    "BENCH_FLEET_WRITE_RATE": (200.0, "VCO_SSM_WRITE_RATE in the fleet scenario (moto has no quota)"),
    "BENCH_FLEET_DRIFT_INTERVAL": (60, "VCO_DRIFT_CHECK_INTERVAL (seconds) in the fleet scenario"),
    "BENCH_FLEET_IDLE_INTERVALS": (3, "drift intervals the fleet scenario's idle window lasts"),
    "BENCH_FLEET_ROTATIONS": (50, "Secrets rotated one at a time on the idle fleet"),
    "BENCH_FLEET_TIMEOUT": (
        0,
        "longest wait (s) for the fleet's all-Ready and restart catch-up; 0: 3 x N / the lower of "
        "the read and write rates, at least 600",
    ),
    "BENCH_SCENARIOS": ("create,rotate,restart,idle,noise,rate,delete,drift,fleet", "scenarios to run"),
}


def setting(name):
    default = SETTINGS[name][0]
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return type(default)(raw)


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
STATE = os.environ["VCO_TESTENV_DIR"]
OUT_DIR = os.path.join(ROOT, "target", "bench")
# BENCH_BIN: another build to measure, e.g. the image's static musl binary (hack/image.sh).
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "vault-connection-operator")
PREFIX = "/vco-bench"
NS_MAIN = "bench"
NS_RATE = "bench-rate"
NS_DRIFT = "bench-drift"
NS_FLEET = "bench-fleet"
NS_FLEET_EMPTY = "bench-fleet-empty"  # the fleet's memory baseline: an operator with nothing to do
# The fleet's namespaces are labelled with this tier, and the fleet's operators get tier limits
# that leave it unlimited (whatever VCO_TIER_LIMITS the caller's environment holds).
FLEET_TIER = "enterprise"
FLEET_TIER_LIMITS = "free=1,team=10,enterprise=unlimited"
MIB = 1024 * 1024


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- Kubernetes API, with the admin client certificate of the kubeconfig ---------------------


class Kube:
    """A minimal client: JSON over HTTPS with a client certificate, one connection per thread."""

    def __init__(self, kubeconfig):
        text = open(kubeconfig).read()

        def field(name):
            m = re.search(rf"^\s*{name}:\s*(\S+)\s*$", text, re.M)
            if not m:
                raise SystemExit(f"{kubeconfig}: no {name}")
            return m.group(1)

        server = field("server")
        m = re.match(r"https://([^:/]+):(\d+)", server)
        self.host, self.port = m.group(1), int(m.group(2))
        pki = os.path.join(OUT_DIR, "pki")
        os.makedirs(pki, mode=0o700, exist_ok=True)
        files = {}
        for key, name in [
            ("certificate-authority-data", "ca.crt"),
            ("client-certificate-data", "admin.crt"),
            ("client-key-data", "admin.key"),
        ]:
            path = os.path.join(pki, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(field(key)))
            files[name] = path
        self.ctx = ssl.create_default_context(cafile=files["ca.crt"])
        self.ctx.load_cert_chain(files["admin.crt"], files["admin.key"])
        self.local = threading.local()

    def _conn(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
            self.local.conn = conn
        return conn

    def request(self, method, path, body=None, content_type="application/json", ok=(200, 201)):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = {"Accept": "application/json", "User-Agent": "vco-bench"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(3):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        if resp.status not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {raw[:300]!r}")
        if resp.getheader("Content-Type", "").startswith("application/json"):
            return resp.status, json.loads(raw)
        return resp.status, raw.decode()

    def get(self, path, ok=(200,)):
        return self.request("GET", path, ok=ok)[1]

    def post(self, path, body, ok=(201,)):
        return self.request("POST", path, body, ok=ok)[1]

    def merge_patch(self, path, body):
        return self.request("PATCH", path, body, content_type="application/merge-patch+json", ok=(200,))[1]

    def delete(self, path, ok=(200, 202, 404)):
        return self.request("DELETE", path, ok=ok)[1]


def parallel(fn, items, workers=8):
    """Runs fn over items on `workers` threads; raises the first error."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fn, items):
            pass


# ---- metrics ---------------------------------------------------------------------------------

FAMILY = re.compile(r"^# (?:TYPE|HELP) ([a-zA-Z_:][a-zA-Z0-9_:]*)", re.M)
LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text, wanted):
    """{(name, frozenset(labels)): value} for the metric names in `wanted`."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = LINE.match(line)
        if not m or m.group(1) not in wanted:
            continue
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            pass
    return out


OP_METRICS = {
    "vault_connection_operator_ssm_calls_total",
    "vault_connection_operator_reconciles_total",
    "vault_connection_operator_reconcile_errors_total",
    "vault_connection_operator_reconcile_duration_seconds_bucket",
    "vault_connection_operator_reconcile_duration_seconds_sum",
    "vault_connection_operator_reconcile_duration_seconds_count",
    "vault_connection_operator_connections",
    "vault_connection_operator_drift_checked_total",
}
# Drift checks by result (unchanged, changed, missing); operators before batched drift checks
# do not have it.
DRIFT_CHECKED = "vault_connection_operator_drift_checked_total"


class OpSnapshot:
    def __init__(self, samples, families=frozenset()):
        self.s = samples
        self.families = families

    def has(self, name):
        """Whether the process exposes the metric (a family without samples yet counts)."""
        base = name[: -len("_total")] if name.endswith("_total") else name
        return base in self.families or name in self.families or any(n == name for n, _ in self.s)

    def by_label(self, name, label):
        out = {}
        for (n, labels), v in self.s.items():
            if n == name:
                key = dict(labels).get(label, "")
                out[key] = out.get(key, 0) + v
        return out

    def total(self, name, **match):
        return sum(
            v
            for (n, labels), v in self.s.items()
            if n == name and all((k, val) in labels for k, val in match.items())
        )

    def ssm(self, operation=None, outcome=None):
        match = {}
        if operation:
            match["operation"] = operation
        if outcome:
            match["outcome"] = outcome
        return self.total("vault_connection_operator_ssm_calls_total", **match)

    def ssm_by_op(self):
        ops = {}
        for (n, labels), v in self.s.items():
            if n == "vault_connection_operator_ssm_calls_total":
                d = dict(labels)
                key = d["operation"] if d.get("outcome") == "success" else f"{d['operation']}:{d.get('outcome')}"
                ops[key] = ops.get(key, 0) + v
        return ops

    def reconciles(self):
        return self.total("vault_connection_operator_reconciles_total")

    def ready(self):
        return self.total("vault_connection_operator_connections", status="True")

    def activity(self):
        return self.ssm() + self.reconciles()

    def writes(self):
        """SSM calls that change something: what must stop before a phase counts as settled
        while drift checks (reads) go on, as they do continuously after a restart."""
        return sum(self.ssm(op) for op in ("PutParameter", "DeleteParameter", "AddTagsToResource"))

    def buckets(self):
        out = {}
        for (n, labels), v in self.s.items():
            if n == "vault_connection_operator_reconcile_duration_seconds_bucket":
                out[dict(labels)["le"]] = v
        return out


def diff_counts(after, before):
    keys = set(after) | set(before)
    d = {k: int(round(after.get(k, 0) - before.get(k, 0))) for k in keys}
    return {k: v for k, v in sorted(d.items()) if v}


def reconcile_stats(after, before):
    """Mean and bucket-estimated p50/p99 of reconcile durations between two snapshots (ms)."""
    n = after.total("vault_connection_operator_reconcile_duration_seconds_count") - before.total(
        "vault_connection_operator_reconcile_duration_seconds_count"
    )
    s = after.total("vault_connection_operator_reconcile_duration_seconds_sum") - before.total(
        "vault_connection_operator_reconcile_duration_seconds_sum"
    )
    if n <= 0:
        return {"count": 0}
    b_after, b_before = after.buckets(), before.buckets()
    bounds = sorted(((float(le), b_after[le] - b_before.get(le, 0)) for le in b_after), key=lambda x: x[0])

    def quantile(q):
        for le, c in bounds:
            if c >= q * n:
                return None if le == float("inf") else le * 1000
        return None

    return {
        "count": int(n),
        "mean_ms": round(s / n * 1000, 2),
        "p50_le_ms": quantile(0.5),
        "p99_le_ms": quantile(0.99),
    }


# The counters of a process that has just started.
ZERO = OpSnapshot({})

# API writes the operator can make, and reads it makes per reconcile.
# apiserver_request_total names creates POST and updates PUT; shown here as CREATE and UPDATE.
WRITE_VERBS = {"POST": "CREATE", "PUT": "UPDATE", "PATCH": "PATCH", "APPLY": "APPLY", "DELETE": "DELETE"}
OPERATOR_RESOURCES = {"vaultconnections", "events"}
READ_RESOURCES = {"secrets", "namespaces", "vaultconnections"}


def api_requests(kube, text=None):
    text = kube.get("/metrics") if text is None else text
    counts = {}
    for (n, labels), v in parse_metrics(text, {"apiserver_request_total"}).items():
        d = dict(labels)
        res = d.get("resource", "")
        if d.get("subresource"):
            res += "/" + d["subresource"]
        key = (d.get("verb", ""), res, d.get("group", ""), d.get("code", ""))
        counts[key] = counts.get(key, 0) + v
    return counts


def api_writes(after, before, harness=None):
    """Writes on the operator's resources between two apiserver snapshots, minus the harness's."""
    d = {}
    for (verb, res, group, code), v in after.items():
        if verb not in WRITE_VERBS or res.split("/")[0] not in OPERATOR_RESOURCES:
            continue
        delta = v - before.get((verb, res, group, code), 0)
        if delta:
            key = f"{WRITE_VERBS[verb]} {res}" + ("" if code.startswith("2") else f" ({code})")
            d[key] = d.get(key, 0) + int(round(delta))
    for key, n in (harness or {}).items():
        d[key] = d.get(key, 0) - n
    return {k: v for k, v in sorted(d.items()) if v}


def secret_reads(text):
    """Counters of the API server's /metrics text that tell Secret reads: GETs and LISTs of
    Secrets, the Secret objects those LISTs returned (from the watch cache or from etcd),
    Secret watches open and watches whose initial list was streamed. Its metrics do not say
    whether a request asked for metadata only, nor which client made it."""
    out = {}

    def add(key, v):
        out[key] = out.get(key, 0) + v

    wanted = {
        "apiserver_request_total",
        "apiserver_cache_list_returned_objects_total",
        "apiserver_storage_list_returned_objects_total",
        "apiserver_longrunning_requests",
        "apiserver_watch_list_duration_seconds_count",
    }
    for (n, labels), v in parse_metrics(text, wanted).items():
        d = dict(labels)
        if d.get("resource") != "secrets" or d.get("subresource"):
            continue
        if n == "apiserver_request_total" and d.get("verb") in ("GET", "LIST"):
            add(f"{d['verb']} secrets", v)
        elif n.endswith("_list_returned_objects_total"):
            add("secrets returned by LISTs", v)
        elif n == "apiserver_longrunning_requests" and d.get("verb") == "WATCH":
            add("secret watches open", v)
        elif n == "apiserver_watch_list_duration_seconds_count":
            add("secret watches with a streamed initial list", v)
    return out


def secret_data_reads(delta, labelled):
    """Reads of Secret data in a window, from a diff of two secret_reads: GETs, plus the Secrets
    LISTs returned beyond one list of the `labelled` opted-in Secrets per Secret watch opened
    with a LIST (the operator's Secret watch is metadata-only). A per-connection read (a LIST
    of one Secret by name) returns one Secret."""
    opened = delta.get("secret watches open", 0) - delta.get("secret watches with a streamed initial list", 0)
    listed = delta.get("secrets returned by LISTs", 0) - max(0, opened) * labelled
    return int(delta.get("GET secrets", 0) + max(0, listed))


def api_reads(after, before):
    d = {}
    for (verb, res, group, code), v in after.items():
        if verb not in {"GET", "LIST"} or res.split("/")[0] not in READ_RESOURCES:
            continue
        delta = v - before.get((verb, res, group, code), 0)
        if delta:
            key = f"{verb} {res}"
            d[key] = d.get(key, 0) + int(round(delta))
    return dict(sorted(d.items()))


# ---- the operator process --------------------------------------------------------------------


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
        env = dict(os.environ)
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


# ---- fixtures --------------------------------------------------------------------------------


def ensure_namespace(kube, ns):
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"vaultconnections.io/tier": "enterprise"}},
    }
    kube.request("POST", "/api/v1/namespaces", body, ok=(201, 409))


def token(i, generation=0):
    return f"ops_bench{generation:04d}x{i:06d}" + "A" * 40


def create_connections(kube, ns, n, workers=8):
    """n labelled Secrets and n VaultConnections (1Password) in ns; returns seconds taken."""
    start = time.monotonic()

    def one(i):
        name = f"conn-{i:05d}"
        kube.post(
            f"/api/v1/namespaces/{ns}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "labels": {"vaultconnections.io/credentials": "true"}},
                "type": "Opaque",
                "stringData": {"access_token": token(i)},
            },
        )
        kube.post(
            f"/apis/vaultconnections.io/v1alpha1/namespaces/{ns}/vaultconnections",
            {
                "apiVersion": "vaultconnections.io/v1alpha1",
                "kind": "VaultConnection",
                "metadata": {"name": name},
                "spec": {
                    "vaultType": "onepassword",
                    "credentialsSecretRef": {"name": name},
                    "description": "benchmark connection",
                },
            },
        )

    parallel(one, range(n), workers)
    return time.monotonic() - start


def create_noise(kube, ns, n, kib, workers=8):
    payload = base64.b64encode(os.urandom(kib * 1024)).decode()
    start = time.monotonic()

    def one(i):
        kube.post(
            f"/api/v1/namespaces/{ns}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"noise-{i:06d}", "labels": {"app": "unrelated"}},
                "type": "Opaque",
                "data": {"blob": payload},
            },
        )

    parallel(one, range(n), workers)
    return time.monotonic() - start


def ensure_tier_namespace(kube, ns, tier):
    """The namespace, labelled with `tier` (also when it existed without the label)."""
    ensure_namespace(kube, ns)
    kube.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"vaultconnections.io/tier": tier}}})


def param_name(ns, name):
    return f"{PREFIX}/default/{ns}/{name}"


# ---- scenarios -------------------------------------------------------------------------------


class Bench:
    def __init__(self):
        self.kube = Kube(os.environ["KUBECONFIG"])
        self.ssm = boto3.client(
            "ssm", endpoint_url=os.environ["AWS_ENDPOINT_URL_SSM"], region_name=os.environ.get("AWS_REGION", "us-east-1")
        )
        self.results = []
        self.op = None  # the operator over NS_MAIN between scenarios
        self.n = setting("BENCH_N")
        self.created = False
        # The results of the previous run, read before this run overwrites them: the fleet
        # scenario reuses a memory baseline measured for the same binary and flags.
        try:
            with open(os.path.join(OUT_DIR, "results.json")) as f:
                self.previous = json.load(f)
        except (OSError, ValueError):
            self.previous = {}

    def record(self, name, parameters, figures, goals):
        entry = {
            "scenario": name,
            "parameters": parameters,
            "figures": figures,
            "goals": goals,
            # Other work on the machine skews timings: the load average says how much there was.
            "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
        }
        self.results.append(entry)
        log(f"{name}: {json.dumps(figures)}")
        self.save()

    def save(self):
        with open(os.path.join(OUT_DIR, "results.json.tmp"), "w") as f:
            json.dump({"machine": machine(), "settings": all_settings(), "scenarios": self.results}, f, indent=2)
        os.replace(os.path.join(OUT_DIR, "results.json.tmp"), os.path.join(OUT_DIR, "results.json"))

    # create: N connections exist, a fresh operator starts; time until all Ready.
    def create(self):
        n, rate = self.n, setting("BENCH_WRITE_RATE")
        ensure_namespace(self.kube, NS_MAIN)
        log(f"create: creating {n} Secrets and VaultConnections in {NS_MAIN} (operator not running)")
        took_objects = create_connections(self.kube, NS_MAIN, n)
        self.created = True
        api0 = api_requests(self.kube)
        self.op = start_operator([NS_MAIN], rate, 3600, "create")
        base = ZERO  # a fresh process: its counters start at zero
        log(f"create: operator started; waiting until {n} connections are Ready")
        # From the process start: the objects existed before it.
        t_ready, _ = self.op.wait(lambda s: s.ready() >= n, timeout=max(600, 3 * n / rate), what="all Ready", poll=0.5)
        after = self.op.settle()
        t_settled = time.monotonic() - self.op.started
        proc = self.op.proc_status()
        api1 = api_requests(self.kube)
        ssm = diff_counts(after.ssm_by_op(), base.ssm_by_op())
        writes = api_writes(api1, api0)
        burst = max(1, int(rate))  # the operator's token bucket starts full
        floor = max(0.0, (n - burst) / rate)
        self.record(
            "create",
            {"N": n, **self.op.settings, "provider": "onepassword"},
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
                "harness_scrapes_of_operator_metrics": self.op.scrapes,
            },
            {
                "ssm_calls_per_connection": "1 GetParameter (not found) + 1 PutParameter",
                "api_writes_per_connection": "1 PATCH (finalizer) + 1 PATCH status + 1 CREATE event",
                "all_ready_seconds": f">= {floor:.0f} s ((N - {burst} burst) / rate)",
            },
        )

    # rotate: M Secrets rotated one at a time; latency to the new parameter version.
    def rotate(self):
        self.need_main()
        m = min(setting("BENCH_ROTATIONS"), self.n)
        op = self.op
        step = max(1, self.n // m)
        before = op.settle()
        api0 = api_requests(self.kube)
        proc0 = op.proc_status()
        log(f"rotate: rotating {m} Secrets one at a time")
        lat, spacing, _ = self.rotate_secrets(op, NS_MAIN, [k * step for k in range(m)])
        after = op.settle()
        api1 = api_requests(self.kube)
        ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
        writes = api_writes(api1, api0)
        lat.sort()
        self.record(
            "rotate",
            {
                "N": self.n,
                "M": m,
                "poll_interval_ms": setting("BENCH_POLL_MS"),
                "min_spacing_ms": round(spacing * 1000),
                **op.settings,
            },
            {
                "latency_ms": {
                    "p50": round(pct(lat, 50), 1),
                    "p95": round(pct(lat, 95), 1),
                    "p99": round(pct(lat, 99), 1),
                    "max": round(lat[-1], 1),
                    "mean": round(statistics.mean(lat), 1),
                },
                "ssm_calls": ssm,
                "ssm_calls_per_rotation": per(ssm, m),
                "api_writes": writes,
                "api_writes_per_rotation": per(writes, m),
                "api_reads": api_reads(api1, api0),
                "reconciles": reconcile_stats(after, before),
                "operator_cpu_seconds": round(op.proc_status()["cpu_seconds"] - proc0["cpu_seconds"], 2),
            },
            {"ssm_calls_per_rotation": "1 GetParameter + 1 PutParameter", "api_writes_per_rotation": "1 PATCH status + 1 event"},
        )

    def rotate_secrets(self, op, ns, indices, timeout=60, give_up=False):
        """Rotates the Secrets conn-<i> of ns, i in indices, one at a time: updates the Secret's
        data and polls GetParameter every BENCH_POLL_MS until the parameter has a new version.
        Returns the latencies (ms), the spacing (s) and how many rotations were not stored
        within `timeout` s (with `give_up` the rotations stop at the first; without, it raises)."""
        lat = []
        poll = setting("BENCH_POLL_MS") / 1000
        # Rotations back to back would queue behind the write rate (each waits ~1/rate for a
        # token once the burst is spent) and measure the rate limiter, not the reaction: start
        # each rotation at least one token period after the previous one.
        spacing = 1.0 / float(op.settings["VCO_SSM_WRITE_RATE"]) + 0.02
        last = 0.0
        for k, i in enumerate(indices):
            time.sleep(max(0.0, last + spacing - time.monotonic()))
            last = time.monotonic()
            name = f"conn-{i:05d}"
            pname = param_name(ns, name)
            v0 = self.ssm.get_parameter(Name=pname)["Parameter"]["Version"]
            t0 = time.monotonic()
            self.kube.merge_patch(f"/api/v1/namespaces/{ns}/secrets/{name}", {"stringData": {"access_token": token(i, k + 1)}})
            while True:
                v = self.ssm.get_parameter(Name=pname)["Parameter"]["Version"]
                if v > v0:
                    lat.append((time.monotonic() - t0) * 1000)
                    break
                if time.monotonic() - t0 > timeout:
                    if give_up:
                        log(f"rotation of {ns}/{name} not stored within {timeout}s; no further rotations")
                        return lat, spacing, 1
                    raise RuntimeError(f"rotation of {name} not stored within {timeout}s; log: {op.log_path}")
                time.sleep(poll)
        return lat, spacing, 0

    # restart: SIGTERM the operator over N Ready connections and start it again.
    def restart(self):
        self.need_main()
        n, interval = self.n, setting("BENCH_DRIFT_INTERVAL")
        stopped = stop_operator(self.op) if self.op else 0.0
        self.op = None
        api0 = api_requests(self.kube)
        self.op = op = start_operator([NS_MAIN], setting("BENCH_WRITE_RATE"), interval, "restart")
        base = ZERO
        t_ready = op.ready_after
        log(f"restart: waiting until all {n} connections were checked")
        t_caught, _ = op.wait(lambda s: s.total(DRIFT_CHECKED) >= n, timeout=600, what="catch-up", poll=0.1)
        after = op.settle(reads_continue=True)
        api1 = api_requests(self.kube)
        ssm = diff_counts(after.ssm_by_op(), base.ssm_by_op())
        writes = api_writes(api1, api0)
        self.record(
            "restart",
            {"N": n, **op.settings},
            {
                "shutdown_seconds": stopped,
                "ready_seconds_from_start": round(t_ready, 2),
                "caught_up_seconds_from_start": round(t_caught, 2),
                "ssm_calls": ssm,
                "ssm_writes": sum(v for k, v in ssm.items() if k.startswith("PutParameter")),
                "api_writes": writes,
                "api_reads": api_reads(api1, api0),
                "reconciles": reconcile_stats(after, base),
                "operator": op.proc_status(),
            },
            {"ssm_calls": f"{-(-n // 10)} GetParameters (10 names each), no GetParameter", "ssm_writes": 0, "api_writes": "none"},
        )

    # idle: nothing changes for BENCH_IDLE_SECONDS; only drift checks may happen.
    def idle(self):
        self.need_main()
        n, seconds, interval = self.n, setting("BENCH_IDLE_SECONDS"), setting("BENCH_DRIFT_INTERVAL")
        op = self.op
        if op.settings["VCO_DRIFT_CHECK_INTERVAL"] != f"{interval}s":
            stop_operator(op)
            self.op = op = start_operator([NS_MAIN], setting("BENCH_WRITE_RATE"), interval, "idle")
            op.wait(lambda s: s.total(DRIFT_CHECKED) >= n, timeout=600, what="catch-up")
        op.settle(reads_continue=True)
        since_start = time.monotonic() - op.started
        before = op.metrics()
        api0 = api_requests(self.kube)
        proc0 = op.proc_status()
        log(f"idle: watching for {seconds}s (drift interval {interval}s)")
        time.sleep(seconds)
        after = op.metrics()
        api1 = api_requests(self.kube)
        proc1 = op.proc_status()
        ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
        writes = api_writes(api1, api0)
        self.record(
            "idle",
            {"N": n, "idle_seconds": seconds, "window_starts_after_operator_start_s": round(since_start, 1), **op.settings},
            {
                "ssm_calls": ssm,
                "expected_get_parameters": round(-(-n // 10) * seconds / interval),
                "ssm_writes": sum(v for k, v in ssm.items() if k.startswith("PutParameter")),
                "api_writes": writes,
                "api_reads": api_reads(api1, api0),
                "reconciles": reconcile_stats(after, before),
                "operator_cpu_seconds": round(proc1["cpu_seconds"] - proc0["cpu_seconds"], 2),
                "rss_mib_start": proc0["rss_mib"],
                "rss_mib_end": proc1["rss_mib"],
            },
            {"ssm_calls": "ceil(N/10) x idle / interval GetParameters, no GetParameter", "ssm_writes": 0, "api_writes": "none", "api_reads": "none"},
        )

    # noise: operator RSS over N connections, without and then with unrelated Secrets.
    def noise(self):
        self.need_main()
        n, k, kib = self.n, setting("BENCH_NOISE"), setting("BENCH_NOISE_KIB")
        if self.op:
            stop_operator(self.op)
            self.op = None

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
        took = create_noise(self.kube, NS_MAIN, k, kib)
        log(f"noise: created in {took:.0f}s; measuring a fresh operator with noise")
        noisy = measure("noise")
        self.record(
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

    # rate: a smaller create at AWS's default write quota: is it within 10% of N/rate?
    def rate(self):
        n, rate = setting("BENCH_RATE_N"), setting("BENCH_RATE")
        if self.op:
            stop_operator(self.op)
            self.op = None
        ensure_namespace(self.kube, NS_RATE)
        log(f"rate: creating {n} connections in {NS_RATE}")
        create_connections(self.kube, NS_RATE, n)
        api0 = api_requests(self.kube)
        self.rate_op = op = start_operator([NS_RATE], rate, 3600, "rate")
        base = ZERO
        t, _ = op.wait(lambda s: s.ready() >= n, timeout=max(600, 3 * n / rate), what="all Ready", poll=0.5)
        after = op.settle()
        api1 = api_requests(self.kube)
        ssm = diff_counts(after.ssm_by_op(), base.ssm_by_op())
        floor = n / rate
        burst = max(1, int(rate))
        self.record(
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

    # drift: parameters changed out of band are repaired by the next drift check.
    def drift(self):
        r, interval = setting("BENCH_DRIFT_N"), setting("BENCH_DRIFT_REPAIR_INTERVAL")
        ensure_namespace(self.kube, NS_DRIFT)
        log(f"drift: creating {r} connections in {NS_DRIFT}")
        create_connections(self.kube, NS_DRIFT, r)
        # The write rate is not what this measures: let all repairs fit in one check interval.
        op = start_operator([NS_DRIFT], max(10.0, r / (interval / 4)), interval, "drift")
        op.wait(lambda s: s.ready() >= r, timeout=120, what="all Ready")
        # The window runs from here to just after the repairs: one drift check per connection,
        # due 0.9-1.1 intervals after the first sync, and the next one 0.9 intervals later.
        before = op.settle(quiet=1.0)
        api0 = api_requests(self.kube)
        tampered = {}
        for i in range(r):
            out = self.ssm.put_parameter(
                Name=param_name(NS_DRIFT, f"conn-{i:05d}"),
                Value="changed out of band",
                Type="SecureString",
                Overwrite=True,
            )
            tampered[i] = out["Version"]
        t0 = time.monotonic()
        lat = []
        for i in range(r):
            while self.ssm.get_parameter(Name=param_name(NS_DRIFT, f"conn-{i:05d}"))["Parameter"]["Version"] <= tampered[i]:
                if time.monotonic() - t0 > 3 * interval:
                    raise RuntimeError(f"drift of conn-{i:05d} not repaired within {3 * interval}s; log: {op.log_path}")
                time.sleep(0.05)
            lat.append(time.monotonic() - t0)
        after = op.settle(quiet=1.0)
        if time.monotonic() - t0 > 1.5 * interval:
            log("drift: the window outlasted the next drift check; per-repair counts include it")
        api1 = api_requests(self.kube)
        ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
        writes = api_writes(api1, api0)
        stop_operator(op)
        self.record(
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

    # delete: every connection of the rate scenario deleted; parameters removed.
    def delete(self):
        op = self.need_rate()
        n = setting("BENCH_RATE_N")
        before = op.settle()
        api0 = api_requests(self.kube)
        start = time.monotonic()
        parallel(
            lambda i: self.kube.delete(
                f"/apis/vaultconnections.io/v1alpha1/namespaces/{NS_RATE}/vaultconnections/conn-{i:05d}"
            ),
            range(n),
        )
        deadline = start + 300
        while True:
            left = len(self.kube.get(f"/apis/vaultconnections.io/v1alpha1/namespaces/{NS_RATE}/vaultconnections")["items"])
            if left == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} connections still present after 300s; log: {op.log_path}")
            time.sleep(0.2)
        took = time.monotonic() - start
        after = op.settle()
        api1 = api_requests(self.kube)
        ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
        # The harness itself listed vaultconnections while waiting: reads are not reported here.
        writes = api_writes(api1, api0, harness={"DELETE vaultconnections": n})
        left = self.ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": [f"{PREFIX}/default/{NS_RATE}/"]}]
        )["Parameters"]
        self.record(
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
        self.rate_op = None

    # fleet: N connections in a namespace of their own, at fleet scale: created while the
    # operator is stopped, a restart with nothing changed, some drift intervals at rest, the
    # memory that costs, and rotations on the idle fleet; against the goals of FLEET_GOALS.
    def fleet(self):
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
        if self.op:
            stop_operator(self.op)
            self.op = None
        try:
            for ns in (NS_FLEET, NS_FLEET_EMPTY):
                ensure_tier_namespace(self.kube, ns, FLEET_TIER)
            figures["baseline"] = baseline = self.fleet_baseline(rate, interval, extra)

            # 1. create: the objects exist before the operator starts.
            log(f"fleet: creating {n} Secrets and VaultConnections in {NS_FLEET} (operator not running)")
            took_objects = create_connections(self.kube, NS_FLEET, n)
            api0 = api_requests(self.kube)
            op = start_operator([NS_FLEET], rate, interval, "fleet-create", extra)
            log(f"fleet: operator started; waiting until {n} connections are Ready (at most {timeout}s)")
            t_ready, _ = op.wait(lambda s: s.ready() >= n, timeout=timeout, what="all Ready", poll=0.5)
            after = op.settle(reads_continue=True)
            api1 = api_requests(self.kube)
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
            self.fleet_log("create", figures["create"])

            # 2. restart: a fresh process over the same, unchanged fleet.
            stopped = stop_operator(op)
            op = None
            text = self.kube.get("/metrics")
            api0, secrets0 = api_requests(self.kube, text), secret_reads(text)
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
            text = self.kube.get("/metrics")
            api1, secret_delta = api_requests(self.kube, text), diff_counts(secret_reads(text), secrets0)
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
            self.fleet_log("restart", restart)

            # 3. idle: some drift intervals with nothing changing.
            op.settle(reads_continue=True)
            window = intervals * interval
            log(f"fleet: idle for {intervals} drift intervals ({window}s)")
            since_start = time.monotonic() - op.started
            before, api0, proc0 = op.metrics(), api_requests(self.kube), op.proc_status()
            time.sleep(window)
            after, api1, proc1 = op.metrics(), api_requests(self.kube), op.proc_status()
            ssm = diff_counts(after.ssm_by_op(), before.ssm_by_op())
            writes, reads = api_writes(api1, api0), api_reads(api1, api0)
            units = n * intervals  # connection-intervals
            decrypting = sum(v for k, v in ssm.items() if k.split(":")[0] == "GetParameter")
            idle = {
                "window_seconds": window,
                "window_starts_after_operator_start_s": round(since_start, 1),
                "ssm_calls": ssm,
                "ssm_calls_per_connection_per_interval": per(ssm, units),
                "ssm_calls_total_per_connection_per_interval": round(sum(ssm.values()) / units, 4),
                "decrypting_reads": decrypting,
                "decrypting_reads_per_connection_per_interval": round(decrypting / units, 4),
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
            self.fleet_log("idle", idle)

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
            self.fleet_log("memory", figures["memory"])

            # 5. rotations on the idle fleet, one at a time, as in the rotate scenario.
            before, api0 = op.metrics(), api_requests(self.kube)
            step = max(1, n // m)
            log(f"fleet: rotating {m} Secrets one at a time on the idle fleet")
            lat, spacing, timed_out = self.rotate_secrets(op, NS_FLEET, [k * step for k in range(m)], give_up=True)
            after, api1 = op.settle(reads_continue=True), api_requests(self.kube)
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
            self.fleet_log("rotation", figures["rotation"])
            stop_operator(op)
            op = None
        except BaseException as e:
            figures["error"] = f"{type(e).__name__}: {e}"
            raise
        finally:
            if op is not None:
                stop_operator(op)
            figures["goals_met"] = fleet_goals(figures, n, read_rate)
            self.record("fleet", params, figures, FLEET_GOALS)
            for key, g in figures["goals_met"].items():
                verdict = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
                log(f"fleet goal {verdict}: {FLEET_GOALS[key]} -- measured {g['measured']}")

    def fleet_log(self, phase, figures):
        log(f"fleet {phase}: {json.dumps(figures)}")

    def fleet_baseline(self, rate, interval, extra):
        """RSS of the same binary with the same flags over an empty namespace: reused from an
        earlier results.json for the same binary and flags, else measured."""
        digest = file_sha256(BIN)
        flags = json.loads(json.dumps(operator_settings(rate, interval, extra)))
        for r in reversed(self.results + self.previous.get("scenarios", [])):
            b = r.get("figures", {}).get("baseline") if r.get("scenario") == "fleet" else None
            if b and b.get("binary_sha256") == digest and b.get("operator_settings") == flags and "rss_kib" in b:
                log(f"fleet: reusing the memory baseline measured {b.get('measured_at')} ({b['rss_kib']} KiB)")
                return {**b, "source": "reused from an earlier results.json"}
        log(f"fleet: measuring the memory baseline: an operator over the empty namespace {NS_FLEET_EMPTY}")
        op = start_operator([NS_FLEET_EMPTY], rate, interval, "fleet-baseline", extra)
        try:
            op.wait_http("/healthz", 30)
            op.settle()
            samples = []
            for _ in range(5):
                samples.append(op.memory_kib()["VmRSS"])
                time.sleep(0.5)
        finally:
            stop_operator(op)
        return {
            "rss_kib": int(statistics.median(samples)),
            "rss_kib_samples": samples,
            "binary": BIN,
            "binary_sha256": digest,
            "operator_settings": flags,
            "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": "measured in this run",
        }

    def need_main(self):
        if not self.created:
            ensure_namespace(self.kube, NS_MAIN)
            log(f"creating {self.n} connections for scenarios that need them")
            create_connections(self.kube, NS_MAIN, self.n)
            self.created = True
        if self.op is None:
            self.op = start_operator([NS_MAIN], setting("BENCH_WRITE_RATE"), setting("BENCH_DRIFT_INTERVAL"), "main")
            self.op.wait(lambda s: s.ready() >= self.n, timeout=3600, what="all Ready", poll=0.5)

    def need_rate(self):
        op = getattr(self, "rate_op", None)
        if op is None:
            raise RuntimeError("the delete scenario needs the rate scenario before it")
        return op


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


# The goals of the fleet-scale work, and how the fleet scenario's figures are judged against them.
FLEET_GOALS = {
    "idle_ssm_calls": "at rest: <= 0.1 SSM calls per connection per drift interval, none decrypting (GetParameter)",
    "idle_api_reads": "at rest: 0 Kubernetes reads",
    "restart_writes": "restart: 0 writes (Kubernetes and SSM)",
    "restart_secret_reads": "restart: 0 Secret data reads",
    "restart_ssm_calls": "restart: <= N/10 SSM calls until caught up",
    "restart_caught_up": "restart: caught up <= 60 s at the default read rate (20/s)",
    "memory_per_connection": "<= 4 KiB RSS per connection",
    "memory_at_10000": "N = 10,000 under 64 MiB RSS",
    "rotation_p99": "rotation on the idle fleet: latency p99 < 200 ms",
}


def fleet_goals(f, n, read_rate):
    """{goal: {"measured", "met"}} from the fleet's figures; met is None where a phase did not run."""
    out = {key: {"measured": "not measured", "met": None} for key in FLEET_GOALS}
    idle, restart, mem, rot = f.get("idle"), f.get("restart"), f.get("memory"), f.get("rotation")
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
        out["memory_per_connection"] = {"measured": f"{kib} KiB per connection", "met": kib <= 4}
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
    return out


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


# ---- the table -------------------------------------------------------------------------------


def fmt_counts(d):
    return ", ".join(f"{v:g} {k}" for k, v in d.items()) or "none"


def table(results):
    rows = []
    for r in results:
        f, p = r["figures"], r["parameters"]
        s = r["scenario"]
        params = ", ".join(f"{k}={v}" for k, v in p.items())
        if s == "create":
            rows += [
                (s, params, "all Ready", f"{f['all_ready_seconds']} s (floor N/rate {f['write_rate_floor_seconds']} s)"),
                (s, "", "SSM calls / connection", fmt_counts(f["ssm_calls_per_connection"])),
                (s, "", "API writes / connection", fmt_counts(f["api_writes_per_connection"])),
                (s, "", "operator peak RSS, CPU", f"{f['operator']['peak_rss_mib']} MiB, {f['operator']['cpu_seconds']} s"),
            ]
        elif s == "rotate":
            lat = f["latency_ms"]
            rows += [
                (s, params, "latency p50/p95/p99/max", f"{lat['p50']}/{lat['p95']}/{lat['p99']}/{lat['max']} ms"),
                (s, "", "SSM calls / rotation", fmt_counts(f["ssm_calls_per_rotation"])),
                (s, "", "API writes / rotation", fmt_counts(f["api_writes_per_rotation"])),
            ]
        elif s == "restart":
            rows += [
                (s, params, "caught up", f"{f['caught_up_seconds_from_start']} s after process start"),
                (s, "", "SSM calls", fmt_counts(f["ssm_calls"])),
                (s, "", "API writes", fmt_counts(f["api_writes"])),
            ]
        elif s == "idle":
            rows += [
                (s, params, "SSM calls", f"{fmt_counts(f['ssm_calls'])} (expected ~{f['expected_get_parameters']} GetParameters)"),
                (s, "", "API writes", fmt_counts(f["api_writes"])),
                (s, "", "operator CPU", f"{f['operator_cpu_seconds']} s"),
            ]
        elif s == "noise":
            rows += [
                (s, params, "RSS without / with noise", f"{f['without_noise']['rss_mib']} / {f['with_noise']['rss_mib']} MiB"),
                (s, "", "RSS added by noise", f"{f['rss_added_mib']} MiB (peak {f['peak_rss_added_mib']} MiB)"),
            ]
        elif s == "rate":
            rows += [
                (s, params, "all Ready", f"{f['all_ready_seconds']} s = {f['ready_vs_floor']} x N/rate"),
                (s, "", "SSM calls", fmt_counts(f["ssm_calls"])),
            ]
        elif s == "drift":
            rows += [
                (s, params, "SSM calls / repair", fmt_counts(f["ssm_calls_per_repair"])),
                (s, "", "API writes / repair", fmt_counts(f["api_writes_per_repair"])),
            ]
        elif s == "delete":
            rows += [
                (s, params, "SSM calls / connection", fmt_counts(f["ssm_calls_per_connection"])),
                (s, "", "API writes / connection", fmt_counts(f["api_writes_per_connection"])),
                (s, "", "parameters left", str(f["parameters_left"])),
            ]
        elif s == "fleet":
            c, rs, i, mem, rot = (f.get(k) for k in ("create", "restart", "idle", "memory", "rotation"))
            first = params
            def row(figure, value):  # noqa: E306
                nonlocal first
                rows.append((s, first, figure, value))
                first = ""
            if c:
                row("create: all Ready", f"{c['all_ready_seconds']} s after process start")
                row("create: SSM calls / connection", fmt_counts(c["ssm_calls_per_connection"]))
                row("create: API reads / writes per connection", f"{fmt_counts(c['api_reads_per_connection'])} / {fmt_counts(c['api_writes_per_connection'])}")
            if rs:
                t = rs["caught_up_seconds_from_start"]
                row("restart: caught up", (f"{t} s after process start" if t is not None else "not caught up") + f" ({rs['caught_up_definition']})")
                row("restart: SSM calls", fmt_counts(rs["ssm_calls"]))
                row("restart: API reads / writes", f"{fmt_counts(rs['api_reads'])} / {fmt_counts(rs['api_writes'])}")
            if i:
                row("idle: SSM calls / connection / interval", f"{fmt_counts(i['ssm_calls_per_connection_per_interval'])} (GetParameter: {i['decrypting_reads_per_connection_per_interval']})")
                row("idle: API reads / writes per connection / interval", f"{fmt_counts(i['api_reads_per_connection_per_interval'])} / {fmt_counts(i['api_writes_per_connection_per_interval'])}")
            if mem:
                row("memory: RSS, peak, baseline", f"{mem['rss_mib']}, {mem['peak_rss_mib']}, {mem['baseline_rss_mib']} MiB; {mem['kib_per_connection']} KiB / connection")
            if rot:
                lat = rot["latency_ms"]
                row("rotation: p50/p95/p99/max", f"{lat.get('p50')}/{lat.get('p95')}/{lat.get('p99')}/{lat.get('max')} ms" + (" (one not stored within 60 s)" if rot["not_stored_within_60s"] else ""))
            for key, g in f.get("goals_met", {}).items():
                verdict = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
                row(f"goal: {r['goals'][key]}", f"{verdict}: {g['measured']}")
    out = ["| scenario | parameters | figure | value |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def main():
    os.makedirs(os.path.join(OUT_DIR, "logs"), exist_ok=True)
    wanted = [s.strip() for s in setting("BENCH_SCENARIOS").split(",") if s.strip()]
    bench = Bench()
    start = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for name in wanted:
            if name not in SETTINGS["BENCH_SCENARIOS"][0].split(","):
                raise SystemExit(f"unknown scenario {name!r}")
            t = time.monotonic()
            getattr(bench, name)()
            log(f"{name}: done in {time.monotonic() - t:.0f}s")
    finally:
        for op in list(RUNNING):
            stop_operator(op)
    log(f"all scenarios done in {time.monotonic() - start:.0f}s; results: {os.path.join(OUT_DIR, 'results.json')}")
    print(table(bench.results))


if __name__ == "__main__":
    main()
