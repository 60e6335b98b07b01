// Voice360's "Verification (Node.js)" Express receiver, as the document prints
// it (voice360-api-v3.txt, "Verifying Webhook Signatures"), verbatim between
// the markers. Around it, what a reader adds to run it: `express` and `app`,
// a log of every request and the answer it got (JSONL, for the e2e suite),
// and `app.listen`.
// Usage: VOICE360_WEBHOOK_SECRET=... node receiver.js PORT LOG
const express = require('express');
const fs = require('fs');
const [PORT, LOG] = [Number(process.argv[2]), process.argv[3]];
const app = express();

app.use((req, res, next) => {
  res.on('finish', () => {
    const body = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
    fs.appendFileSync(LOG, JSON.stringify({
      path: req.path,
      answered: res.statusCode,
      signature: req.header('X-Voice360-Signature') || null,
      body,
    }) + '\n');
  });
  next();
});

// ---- the document's sample, verbatim ----
const crypto = require('crypto');

function verifyVoice360Signature(rawBody, signatureHeader, signingSecret) {
  // signatureHeader format: "sha256=<hex>"
  const [scheme, providedHex] = (signatureHeader || '').split('=');
  if (scheme !== 'sha256' || !providedHex) return false;

  const expectedHex = crypto
    .createHmac('sha256', signingSecret)
    .update(rawBody)  // raw bytes of the request body
    .digest('hex');

  // Constant-time comparison
  const a = Buffer.from(providedHex, 'hex');
  const b = Buffer.from(expectedHex, 'hex');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

// Express example
app.post('/voice360-webhook',
  express.raw({ type: 'application/json' }),
  (req, res) => {
    const ok = verifyVoice360Signature(
      req.body,                             // Buffer of raw bytes
      req.header('X-Voice360-Signature'),
      process.env.VOICE360_WEBHOOK_SECRET
    );
    if (!ok) return res.status(401).send('Bad signature');

    const event = JSON.parse(req.body.toString('utf8'));
    // ... handle event
    res.sendStatus(200);
  });
// ---- end of the sample ----

app.listen(PORT, '127.0.0.1');
