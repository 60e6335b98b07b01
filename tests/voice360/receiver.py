# Voice360's "Verification (Python)" Flask receiver, as the document prints it
# (voice360-api-v3.txt, "Verifying Webhook Signatures"), verbatim between the
# markers. Around it, what a reader adds to run it: the imports and `app` the
# sample assumes, a log of every request and the answer it got (JSONL, for
# the e2e suite), and `app.run`.
# Usage: VOICE360_WEBHOOK_SECRET=... python receiver.py PORT LOG
import json, os, sys
from flask import Flask

PORT, LOG = int(sys.argv[1]), sys.argv[2]
app = Flask(__name__)

# ---- the document's sample, verbatim ----
import hmac
import hashlib

def verify_voice360_signature(raw_body: bytes, signature_header: str, signing_secret: str) -> bool:
    """signature_header format: 'sha256=<hex>'"""
    if not signature_header or not signature_header.startswith('sha256='):
        return False
    provided_hex = signature_header.split('=', 1)[1]
    expected_hex = hmac.new(
        signing_secret.encode('utf-8'),
        raw_body,
        hashlib.sha256,
    ).hexdigest()
    return hmac.compare_digest(provided_hex, expected_hex)

# Flask example
from flask import request, abort
@app.route('/voice360-webhook', methods=['POST'])
def voice360_webhook():
    raw = request.get_data()  # raw bytes, NOT request.json
    if not verify_voice360_signature(
        raw,
        request.headers.get('X-Voice360-Signature'),
        os.environ['VOICE360_WEBHOOK_SECRET'],
    ):
        abort(401)
    event = json.loads(raw)
    # ... handle event
    return '', 200
# ---- end of the sample ----


@app.after_request
def log_delivery(response):
    with open(LOG, "a") as f:
        f.write(json.dumps({
            "path": request.path,
            "answered": response.status_code,
            "signature": request.headers.get("X-Voice360-Signature"),
            "body": request.get_data(as_text=True),
        }) + "\n")
    return response


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT)
