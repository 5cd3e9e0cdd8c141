"""The objects the scenarios create: namespaces, Secrets, connections, noise."""

import base64
import os
import time

from .kube import parallel
from .settings import PREFIX


def ensure_namespace(kube, ns):
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"vaultconnections.io/tier": "enterprise"}},
    }
    kube.request("POST", "/api/v1/namespaces", body, ok=(201, 409))


def token(i, generation=0):
    return f"ops_bench{generation:04d}x{i:06d}" + "A" * 40


def create_secret(kube, ns, name, i, ok=(201,)):
    """A labelled Secret NAME in ns holding the 1Password token `token(i)`."""
    kube.post(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": {"vaultconnections.io/credentials": "true"}},
            "type": "Opaque",
            "stringData": {"access_token": token(i)},
        },
        ok=ok,
    )


def create_connections(kube, ns, n, workers=8, first=0, secret=None):
    """n VaultConnections (1Password) conn-<first>… in ns, each with a labelled Secret of its
    own, or all naming the one Secret `secret` (created with them); returns seconds taken."""
    start = time.monotonic()
    if secret is not None:
        create_secret(kube, ns, secret, 0, ok=(201, 409))

    def one(i):
        name = f"conn-{i:05d}"
        if secret is None:
            create_secret(kube, ns, name, i)
        kube.post(
            f"/apis/vaultconnections.io/v1alpha1/namespaces/{ns}/vaultconnections",
            {
                "apiVersion": "vaultconnections.io/v1alpha1",
                "kind": "VaultConnection",
                "metadata": {"name": name},
                "spec": {
                    "vaultType": "onepassword",
                    "credentialsSecretRef": {"name": secret or name},
                    "description": "benchmark connection",
                },
            },
        )

    parallel(one, range(first, first + n), workers)
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
