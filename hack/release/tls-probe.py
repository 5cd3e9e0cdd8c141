"""A small HTTPS server standing in for the API server in hack/release/build.sh's smoke test.

The operator's TLS stack is rustls with aws-lc-rs, whose C the cross compiler built: `run` must
complete a handshake with this server, verify its certificate, send its first request (the
kube-system namespace, for the cluster id) and read the answer, or it never logs "starting".

    tls-probe.py CERT KEY PORTFILE
        listen on a free port of 127.0.0.1 (written to PORTFILE once listening); answer
        GET /api/v1/namespaces/kube-system with a Namespace whose uid is PROBE_UID, anything
        else with 404; print each request line with the TLS version and cipher it came over;
        stop after 120 s or when killed.
"""

import http.server
import json
import ssl
import sys
import threading

PROBE_UID = "0e0e0e0e-0000-4000-8000-0000000000a1"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        version, cipher = self.connection.version(), self.connection.cipher()[0]
        print(f"{version} {cipher} {self.command} {self.path.split('?')[0]}", flush=True)
        if self.path.split("?")[0] == "/api/v1/namespaces/kube-system":
            body = json.dumps({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "kube-system", "uid": PROBE_UID},
            }).encode()
            self.send_response(200)
        else:
            body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404}).encode()
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main(cert, key, portfile):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with open(portfile, "w") as f:
        f.write(str(server.server_address[1]))
    threading.Timer(120, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
