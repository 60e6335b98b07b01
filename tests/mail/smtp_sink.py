"""A local SMTP sink for the e2e suites (transcript emails, issue 14).

An aiosmtpd Controller on 127.0.0.1:<port> that accepts every message and
writes each one, exactly as received after DATA (dot-unstuffed, CRLF line
ends), to <dir>/<n>.eml, plus <n>.json with its envelope:

    {"mail_from": "...", "rcpt_tos": ["..."], "peer": "127.0.0.1:...",
     "helo": "...", "bytes": 1234}

The .json is written after the .eml, so a reader that sees n.json can read
n.eml whole. Prints "ready" on stdout once it listens; runs until SIGTERM or
SIGINT.

    python tests/mail/smtp_sink.py --port 8871 --dir /tmp/mails
    python tests/mail/smtp_sink.py --port 8871 --dir /tmp/mails --reject-rcpt bad@example.com

--reject-rcpt ADDR answers RCPT TO:<ADDR> with 550 (to test a refused recipient).
--auth USER:PASSWORD offers AUTH (PLAIN, LOGIN) in clear and requires it before
MAIL FROM (a loopback test of SMTP_URL credentials; the .json gets "auth_user").
"""

import argparse
import itertools
import json
import os
import signal
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

COUNTER_LOCK = threading.Lock()


def auth_user(session):
    """Who logged in (the authenticator's auth_data: the login), or None."""
    data = getattr(session, "auth_data", None)
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else None


class Sink:
    def __init__(self, out_dir, reject):
        self.out_dir = out_dir
        self.reject = {r.lower() for r in reject}
        # A restarted sink goes on numbering after what is already there.
        taken = [int(n.split(".")[0]) for n in os.listdir(out_dir) if n.split(".")[0].isdigit()]
        self.counter = itertools.count(max(taken, default=0) + 1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 recipient rejected by the test sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with COUNTER_LOCK:
            n = next(self.counter)
        base = os.path.join(self.out_dir, str(n))
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with open(base + ".eml.part", "wb") as f:
            f.write(data)
        os.replace(base + ".eml.part", base + ".eml")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "peer": "%s:%s" % tuple(session.peer[:2]) if session.peer else None,
            "helo": session.host_name,
            "auth_user": auth_user(session),
            "bytes": len(data),
        }
        with open(base + ".json.part", "w") as f:
            json.dump(meta, f)
        os.replace(base + ".json.part", base + ".json")
        return "250 OK message accepted"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True, help="where each message is written")
    ap.add_argument("--reject-rcpt", action="append", default=[])
    ap.add_argument("--auth", help="USER:PASSWORD required before MAIL FROM")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    auth = {}
    if args.auth:
        user, _, password = args.auth.partition(":")

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == user.encode()
                and auth_data.password == password.encode()
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

        # In clear on purpose: a loopback test server.
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        auth = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
    controller = Controller(
        Sink(args.dir, args.reject_rcpt),
        hostname="127.0.0.1",
        port=args.port,
        # Keep the bytes as sent: no decoding into str.
        decode_data=False,
        **auth,
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
