"""A webhook receiver for the e2e suite (tests/webhooks.rs).

Verifies every delivery with the `standardwebhooks` package, unmodified,
against the secrets it is currently told to know, and appends what it got to
a JSON-lines log. What to know and how to answer is read from a JSON config
file on every request, so the test can change it at any time (and restart
the process, for "receiver down"):

    {"<hook name>": {"secrets": ["whsec_..."], "status": 200,
                     "retry_after": "3", "fail_times": 1, "body": "ok"}}

POST /hook/<name>: verified with any listed secret -> answers `status`
(default 200; after `fail_times` non-2xx answers, 200) with `body` (default
none). Not verified -> 401.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
FAILED_SO_FAR = {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            name = self.path.rstrip("/").split("/")[-1]
            try:
                with open(args.config) as f:
                    cfg = json.load(f).get(name, {})
            except (OSError, ValueError):
                cfg = {}
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified_with, errors = None, []
            for i, secret in enumerate(cfg.get("secrets", [])):
                try:
                    Webhook(secret).verify(body, headers)
                    verified_with = i
                    break
                except WebhookVerificationError as e:
                    errors.append(str(e))
            status, retry_after = 401, None
            if verified_with is not None:
                status = cfg.get("status", 200)
                with LOCK:
                    failed = FAILED_SO_FAR.get(name, 0)
                    if status >= 300 and "fail_times" in cfg and failed >= cfg["fail_times"]:
                        status = 200
                    elif status >= 300:
                        FAILED_SO_FAR[name] = failed + 1
                if status >= 300:
                    retry_after = cfg.get("retry_after")
            record = {
                "name": name,
                "at": time.time(),
                "webhook_id": headers.get("webhook-id"),
                "signature": headers.get("webhook-signature"),
                # Dialect endpoints sign their own way (checked by the suite).
                "voice360_signature": headers.get("x-voice360-signature"),
                "timestamp": headers.get("webhook-timestamp"),
                "body": body.decode("utf-8", "replace"),
                "verified": verified_with is not None,
                "verified_with": verified_with,
                "errors": errors,
                "answered": status,
            }
            with LOCK, open(args.log, "a") as f:
                f.write(json.dumps(record) + "\n")
            answer = cfg.get("body", "").encode() if verified_with is not None else b""
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
