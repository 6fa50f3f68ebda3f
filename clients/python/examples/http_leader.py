"""The seed's HTTP example: every peer runs QCluster and an HTTP server on
the server_port of its metadata. The leader answers "hello from
<identifier>"; a follower redirects (307) to the leader's host and
metadata["server_port"]; with no leader elected, a peer answers 503 with
Retry-After. So with three peers running, `curl -L` reaches the leader
through any of them, and keeps reaching a leader after the leader is
killed.

Run one per terminal, from the repository root (with the qcluster binary in
PATH or QCLUSTER_BIN, and PYTHONPATH=clients/python unless the SDK is
installed):

    python3 clients/python/examples/http_leader.py examples/http-leader/server_a.json
    python3 clients/python/examples/http_leader.py examples/http-leader/server_b.json
    python3 clients/python/examples/http_leader.py examples/http-leader/server_c.json

    curl -L localhost:8002/

Ctrl-C stops a peer; a leader first hands leadership over, so its followers
redirect to the new leader at once.
"""

from qcluster import QCluster, QClusterError
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def server_port(metadata):
    """The server_port of a peer's metadata, as an int."""
    port = (metadata or {}).get("server_port")
    if isinstance(port, bool) or not isinstance(port, (int, float)) or not 0 < port < 65536 or port != int(port):
        raise ValueError("metadata has no usable server_port: {!r}".format(metadata))
    return int(port)


def main():
    conf_file = sys.argv[1]
    with open(conf_file) as f:
        conf = json.load(f)
    identifier = conf["identifier"]
    # The application's own field: here in the peer's metadata, so that the
    # other peers know it too (a top-level "server_port" works as well).
    port = server_port(conf.get("metadata") or {"server_port": conf.get("server_port")})
    cluster = QCluster(**conf)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if cluster.is_leader():
                self.answer(200, "hello from {}\n".format(identifier))
                return
            leader = cluster.get_leader_info()
            if leader is None:
                self.answer(503, "no leader is elected right now; retry in a moment\n", {"Retry-After": "1"})
                return
            try:
                to = "http://{}:{}{}".format(leader.host, server_port(leader.metadata), self.path)
            except ValueError as e:
                self.answer(502, "the leader {}: {}\n".format(leader.identifier, e))
                return
            self.answer(307, "the leader is {}: {}\n".format(leader.identifier, to), {"Location": to})

        def answer(self, status, text, headers=None):
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    server = ThreadingHTTPServer((conf.get("listen_host") or "127.0.0.1", port), Handler)
    print("{} serving HTTP on port {}".format(identifier, port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if cluster.is_leader():
            # Hand over now rather than let the followers wait an election
            # timeout for the lease to run out.
            try:
                cluster.resign(timeout=2)
            except QClusterError as e:
                print("could not hand leadership over: {}".format(e), file=sys.stderr)
        cluster.close()


if __name__ == "__main__":
    main()
