"""The benchmark's settings (BENCH_* variables), paths, namespaces and log line."""

import json
import os
import sys
import time


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
    "BENCH_NEIGHBOURS_REFUSED": (5000, "connections refused by their tier in the noisy namespace"),
    "BENCH_NEIGHBOURS_SHARED": (300, "served connections in the noisy namespace, all naming one Secret"),
    "BENCH_NEIGHBOURS_ROTATIONS": (50, "Secrets rotated one at a time in the quiet namespace"),
    "BENCH_NEIGHBOURS_ANNOTATE_MS": (100, "period of the annotate loop on the noisy namespace's shared Secret"),
    "BENCH_NEIGHBOURS_REST_SECONDS": (30, "window at rest in which the refused connections' SSM calls are counted"),
    "BENCH_SCENARIOS": (
        "create,rotate,restart,idle,noise,rate,delete,drift,neighbours,fleet",
        "scenarios to run",
    ),
}


def setting(name):
    default = SETTINGS[name][0]
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return type(default)(raw)


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STATE = os.environ["VCO_TESTENV_DIR"]


class Environment:
    """The test environment as `hack/testenv.sh up` describes it in env.json (format 1), the
    same typed file the Rust test kit reads (tests/common/env.rs)."""

    def __init__(self, state):
        path = os.path.join(state, "env.json")
        with open(path) as f:
            doc = json.load(f)
        if doc.get("format") != 1:
            raise SystemExit(f"{path}: format {doc.get('format')!r}; this benchmark reads format 1")
        self.kubeconfig = doc["kubeconfig"]
        self.ssm_endpoint = doc["ssm_endpoint"]
        self.aws_region = doc["aws_region"]
        self.aws_access_key_id = doc["aws_access_key_id"]
        self.aws_secret_access_key = doc["aws_secret_access_key"]

    def child_env(self):
        """What a child process needs to reach the environment (the operator under test)."""
        return {
            "KUBECONFIG": self.kubeconfig,
            "AWS_ENDPOINT_URL_SSM": self.ssm_endpoint,
            "AWS_REGION": self.aws_region,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_EC2_METADATA_DISABLED": "true",
        }


ENV = Environment(STATE)
OUT_DIR = os.path.join(ROOT, "target", "bench")
# BENCH_BIN: another build to measure, e.g. the image's static musl binary (hack/image.sh).
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "vault-connection-operator")
PREFIX = "/vco-bench"
NS_MAIN = "bench"
NS_RATE = "bench-rate"
NS_DRIFT = "bench-drift"
NS_FLEET = "bench-fleet"
NS_NOISY = "bench-noisy"  # the neighbours scenario's noisy tenant
NS_QUIET = "bench-quiet"  # and the tenant whose rotations it must not slow
NS_FLEET_EMPTY = "bench-fleet-empty"  # the fleet's memory baseline: an operator with nothing to do
# The fleet's namespaces are labelled with this tier, and the fleet's operators get tier limits
# that leave it unlimited (whatever VCO_TIER_LIMITS the caller's environment holds).
FLEET_TIER = "enterprise"
FLEET_TIER_LIMITS = "free=1,team=10,enterprise=unlimited"
MIB = 1024 * 1024


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
