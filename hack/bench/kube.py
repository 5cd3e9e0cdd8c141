"""A minimal Kubernetes client: JSON over HTTPS with the admin client certificate."""

import base64
import concurrent.futures
import http.client
import json
import os
import re
import ssl
import threading

from .settings import OUT_DIR


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
