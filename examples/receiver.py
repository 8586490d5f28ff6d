"""A stand-in for the services the examples notify (a warehouse, a user-notification API):
accepts JSON posts on 127.0.0.1 and prints them, so the examples run offline.

    python examples/receiver.py            # listens on 127.0.0.1:8750 until Ctrl-C
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            shown = json.dumps(json.loads(body), indent=2)
        except ValueError:
            shown = body.decode(errors="replace")
        key = self.headers.get("Idempotency-Key", "-")
        print(f"POST {self.path} (idempotency key {key})\n{shown}", flush=True)
        answer = json.dumps({"accepted": True, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        return None


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8750
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
