# CodeB's "Verifying X-CodeB-Signature" Flask receiver, as the document prints
# it (codeb-outbound-ai-rest.txt; line breaks put back), between the markers.
# Around it, what a reader adds to run it: `update_crm`, a log of every
# request and the answer it got (JSONL, for the e2e suite), and `app.run`.
# Usage: CODEB_WEBHOOK_SECRET=... python webhook_receiver.py PORT LOG
import json, sys

PORT, LOG = int(sys.argv[1]), sys.argv[2]


def update_crm(call_id, status):
    with open(LOG, "a") as f:
        f.write(json.dumps({"crm": {"callId": call_id, "status": status}}) + "\n")


# ---- the document's sample, verbatim ----
import hmac, hashlib, os
from flask import Flask, request, abort
WEBHOOK_SECRET = os.environ["CODEB_WEBHOOK_SECRET"].encode()
app = Flask(__name__)
def verify(raw_body: bytes, sig_header: str) -> bool:
    expected = hmac.new(WEBHOOK_SECRET, raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, (sig_header or "").strip())
@app.post("/codeb/webhook")
def hook():
    raw = request.get_data()  # raw bytes, NOT json()
    sig = request.headers.get("X-CodeB-Signature", "")
    if not verify(raw, sig):
        abort(401)
    evt = request.get_json()  # now safe to parse
    if evt["type"] == "outbound-ai.finished":
        update_crm(evt["data"]["callId"], evt["data"]["status"])
    return ("", 204)
# ---- end of the sample ----


@app.after_request
def log_delivery(response):
    with open(LOG, "a") as f:
        f.write(json.dumps({
            "path": request.path,
            "answered": response.status_code,
            "signature": request.headers.get("X-CodeB-Signature"),
            "body": request.get_data(as_text=True),
        }) + "\n")
    return response


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT)
