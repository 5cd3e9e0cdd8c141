"""Faults the scenarios inject into the private test environment, with its own scripts."""

import base64
import json
import os
import subprocess
import urllib.request

from .settings import ROOT, STATE


def component(action, name):
    """`hack/testenv.sh ACTION NAME` on the benchmark's environment (stop, start, restart)."""
    subprocess.run(
        [os.path.join(ROOT, "hack", "testenv.sh"), action, name],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "VCO_TESTENV_DIR": STATE},
    )


def etcd_put(key, value):
    """Writes KEY = VALUE straight into etcd (its JSON gateway), behind the API server's back."""
    with open(os.path.join(STATE, "etcd.url")) as f:
        url = f.read().strip()
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    body = json.dumps({"key": b64(key), "value": b64(value)}).encode()
    req = urllib.request.Request(f"{url}/v3/kv/put", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def lose_the_watches_place(writes=20):
    """Stops the API server, moves etcd's revision on by `writes`, and starts it again: every
    watch resumed afterwards is too old (410 Gone) and its client lists again."""
    component("stop", "kube-apiserver")
    try:
        for i in range(writes):
            etcd_put(f"/vco-bench-relist/{i}", "x")
    finally:
        component("start", "kube-apiserver")
