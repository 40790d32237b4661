"""Bookinfo's productpage: for each request, calls details and then reviews through the pod's
sidecar, on the handling thread, and answers with both (standard library only; no tracing code,
no header propagation).

usage: productpage.py PORT DETAILS_URL REVIEWS_URL
"""
import http.server
import json
import sys
import urllib.request

PORT, DETAILS, REVIEWS = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        page = {"product": 0, "details": fetch(DETAILS), "reviews": fetch(REVIEWS)}
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
