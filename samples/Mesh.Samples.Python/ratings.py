#!/usr/bin/env python3
"""ratings: the demo mesh's Python service (standard library only, Python 3.9+).

It knows nothing about the mesh. Its sidecar (mesh-sidecar) terminates mTLS on the mesh port, enforces
PeerAuthentication and AuthorizationPolicy, forwards the request here on 127.0.0.1 and tells us who called in
X-Forwarded-Client-Cert (Envoy's format: By=...;Hash=...;URI=<caller SPIFFE ID>). Outbound, ratings calls orders
by its mesh name (http://orders/orders/<id>) through the sidecar's outbound proxy, which adds mTLS, routing,
retries and telemetry.

    python3 ratings.py --port 8081 --outbound-proxy http://127.0.0.1:15001

GET /ratings/<id>  a rating for order <id>, with the orders instance that served it and the identities on both hops
GET /healthz       readiness of this process (the sidecar's Sidecar:AppReadyPath)
GET /_stats        what this instance served, in the demo's /_stats shape
SIGTERM/SIGINT     stop accepting, finish the requests in flight, exit 0
"""

import argparse
import json
import os
import re
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE = "ratings"
ORDERS_TIMEOUT_SECONDS = 10
# W3C trace context (and Envoy's request id): a mesh app forwards these so its inbound and outbound hops join one trace.
PROPAGATED_HEADERS = ("traceparent", "tracestate", "x-request-id", "x-demo-user")
# One spelling per order id (no leading zeros): an AuthorizationPolicy on /ratings/13 must not be passed by /ratings/013.
RATING_PATH = re.compile(r"^/ratings/(0|[1-9][0-9]{0,8})$")


class Stats:
    """Counters for /_stats (requests served, errors, calls to orders its policy refused)."""

    def __init__(self, instance):
        self.instance = instance
        self._lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.denied = 0

    def add(self, requests=0, errors=0, denied=0):
        with self._lock:
            self.requests += requests
            self.errors += errors
            self.denied += denied

    def snapshot(self):
        with self._lock:
            return {
                "service": SERVICE,
                "instance": self.instance,
                "requests": self.requests,
                "errors": self.errors,
                "denied": self.denied,
            }


def parse_xfcc(value):
    """Parses X-Forwarded-Client-Cert into a list of dicts (one per element, keys lowercased).

    Envoy's format: elements separated by ',', key=value pairs by ';', a value may be double-quoted (then ',', ';'
    and '=' are literal inside it and '\\"' is a quote).
    """
    elements, pairs, key, buf = [], {}, None, []
    quoted = escaped = False
    for ch in (value or "") + ",":
        if quoted:
            if escaped:
                buf.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            else:
                buf.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == "=" and key is None:
            key, buf = "".join(buf).strip().lower(), []
        elif ch in ";,":
            if key is not None:
                pairs.setdefault(key, "".join(buf).strip())
            key, buf = None, []
            if ch == "," and pairs:
                elements.append(pairs)
                pairs = {}
        else:
            buf.append(ch)
    return elements


def caller_identity(headers):
    """The caller's SPIFFE ID: the URI of the XFCC element our sidecar added (the last one), or None."""
    elements = parse_xfcc(headers.get("X-Forwarded-Client-Cert"))
    return elements[-1].get("uri") if elements else None


class RatingsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the sidecar: every answer carries Content-Length
    server_version = "ratings"
    sys_version = ""

    # Connection state for draining: a connection waiting for its next request is idle, one being answered is busy.
    def setup(self):
        super().setup()
        self.busy = False
        self.server.track(self, True)

    def finish(self):
        self.server.track(self, False)
        super().finish()

    def handle_one_request(self):
        with self.server.lock:
            self.busy = False
            if self.server.draining:
                self.close_connection = True
                return
        super().handle_one_request()

    def parse_request(self):
        with self.server.lock:
            self.busy = True
        return super().parse_request()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, {"status": "ok"})
        elif path == "/_stats":
            self._send(200, self.server.stats.snapshot())
        else:
            match = RATING_PATH.match(path)
            if match:
                self._rating(int(match.group(1)))
            else:
                self._send(404, {"error": "no such path: %s" % path})

    def _rating(self, order_id):
        stats = self.server.stats
        stats.add(requests=1)
        headers = {"Accept": "application/json"}
        for name in PROPAGATED_HEADERS:
            if self.headers.get(name) is not None:
                headers[name] = self.headers.get(name)
        request = urllib.request.Request("http://orders/orders/%d" % order_id, headers=headers)
        try:
            with self.server.opener.open(request, timeout=ORDERS_TIMEOUT_SECONDS) as response:
                order = json.load(response)
        except urllib.error.HTTPError as error:
            body = error.read().decode("utf-8", "replace")[:500]
            if error.code == 403:
                stats.add(denied=1)
            else:
                stats.add(errors=1)
            self._send(502, {"error": "orders answered %d: %s" % (error.code, body), "ratings": stats.instance})
            return
        except (urllib.error.URLError, OSError, ValueError) as error:
            stats.add(errors=1)
            self._send(502, {"error": "orders unreachable through the sidecar: %s" % error, "ratings": stats.instance})
            return

        self._send(200, {
            "order": order_id,
            "stars": order_id % 5 + 1,
            "ratings": stats.instance,
            # Who called us, as our sidecar authenticated them over mTLS.
            "caller": caller_identity(self.headers),
            # Which orders instance answered, and who orders saw calling (our sidecar's identity, over mTLS).
            "orders": order.get("orders"),
            "ordersCaller": order.get("caller"),
        })

    def _send(self, status, payload):
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.server.draining:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-"):
        # Successes would flood the demo's output; failures are worth a line.
        if not str(code).startswith("2"):
            super().log_request(code, size)


class RatingsServer(ThreadingHTTPServer):
    # Non-daemon request threads that server_close() joins: a stop finishes the requests in flight.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address, handler):
        super().__init__(address, handler)
        self.lock = threading.Lock()
        self.draining = False
        self.connections = set()

    def track(self, handler, open_):
        with self.lock:
            if open_:
                self.connections.add(handler)
            else:
                self.connections.discard(handler)

    def drain(self):
        """Stops accepting; answers in flight finish (with Connection: close), idle keep-alive connections close now."""
        with self.lock:
            self.draining = True
            idle = [h for h in self.connections if not h.busy]
        for handler in idle:
            try:
                handler.connection.shutdown(socket.SHUT_RD)  # its thread's wait for a next request ends
            except OSError:
                pass
        self.shutdown()


def main(argv=None):
    parser = argparse.ArgumentParser(description="ratings: the demo mesh's Python service")
    parser.add_argument("--port", type=int, default=int(os.environ.get("RATINGS_PORT", "8081")),
                        help="port on 127.0.0.1 (0: any free port; env RATINGS_PORT; default 8081)")
    parser.add_argument("--outbound-proxy", default=os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or "http://127.0.0.1:15001",
                        help="the sidecar's outbound proxy (env HTTP_PROXY; default http://127.0.0.1:15001)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0-65535, got %d" % args.port)
    if not re.match(r"^http://[^/\s]+/?$", args.outbound_proxy):
        parser.error("--outbound-proxy must be http://host:port (the sidecar's outbound listener), got %r" % args.outbound_proxy)

    server = RatingsServer(("127.0.0.1", args.port), RatingsHandler)
    server.stats = Stats(os.environ.get("DEMO_INSTANCE") or "%s-%d" % (SERVICE, os.getpid()))
    # Only the sidecar's proxy, whatever NO_PROXY says: the mesh names (orders) resolve nowhere else.
    server.opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": args.outbound_proxy}))

    def stop(signum, _frame):
        print("ratings: %s, draining" % signal.Signals(signum).name, flush=True)
        # shutdown() waits for serve_forever() to return, so it cannot run on the thread serving.
        threading.Thread(target=server.drain, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print("ratings listening on http://%s:%d (outbound proxy %s)" % (host, port, args.outbound_proxy), flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()  # joins the request threads still running
    print("ratings stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
