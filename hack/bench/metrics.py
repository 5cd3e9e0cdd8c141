"""Prometheus text parsing, the operator's counters, and the API server's request counts."""

import re


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
    "vault_connection_operator_cache_relists_total",
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
