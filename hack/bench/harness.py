"""The run's state and what several scenarios share: results, the main fleet, baselines."""

import datetime
import json
import os
import statistics
import time

import boto3

from .fixtures import create_connections, ensure_namespace, param_name, token
from .kube import Kube
from .operator import operator_settings, start_operator, stop_operator
from .report import all_settings, file_sha256, machine
from .settings import BIN, ENV, NS_FLEET_EMPTY, NS_MAIN, OUT_DIR, log, setting


class Bench:
    def __init__(self):
        self.kube = Kube(ENV.kubeconfig)
        self.ssm = boto3.client(
            "ssm",
            endpoint_url=ENV.ssm_endpoint,
            region_name=ENV.aws_region,
            aws_access_key_id=ENV.aws_access_key_id,
            aws_secret_access_key=ENV.aws_secret_access_key,
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
