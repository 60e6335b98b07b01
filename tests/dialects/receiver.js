// The webhook receiver of the dialect e2e suite (tests/dialects.rs). It checks
// each delivery the way the seed document tells its readers to:
// - POST /calldock/<name>: the Calldock document's Node.js verifier, verbatim
//   below (`verifyWebhook`), fed the parsed JSON body as Express's
//   `express.json()` would give it (`JSON.parse` of the body).
// - POST /buildvoiceai/<name>: the BuildVoiceAI document's three steps: the raw
//   request body, HMAC-SHA256 with the API key as the secret, compared with the
//   `X-Signature` header.
// Secrets per name are read from the JSON config file on every request
// ({"<name>": {"secret": "..."}}); every delivery is appended to the JSON-lines
// log with its headers, body and whether it verified. Answers 200 when it
// verified, 401 otherwise (as the document's handler does).
const http = require('http');
const fs = require('fs');
const crypto = require('crypto');

const [port, configPath, logPath] = process.argv.slice(2);

// --- from calldock-api.txt, "Node.js Example" ---
function verifyWebhook(payload, signature, webhookSecret) { const expectedSignature = crypto .createHmac('sha256', webhookSecret) .update(JSON.stringify(payload)) .digest('hex'); return signature === expectedSignature; }
// --- end of the document's code ---

function buildvoiceaiVerified(rawBody, signature, apiKey) {
  const expected = crypto.createHmac('sha256', apiKey).update(rawBody).digest('hex');
  return signature === expected;
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    const [, kind, name] = req.url.split('/');
    let cfg = {};
    try { cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'))[name] || {}; } catch (e) { cfg = {}; }
    let verified = false;
    let parsed = null;
    try { parsed = JSON.parse(raw.toString('utf8')); } catch (e) { parsed = null; }
    if (kind === 'calldock' && parsed !== null && cfg.secret) {
      verified = verifyWebhook(parsed, req.headers['x-calldock-signature'], cfg.secret);
    } else if (kind === 'buildvoiceai' && cfg.secret) {
      verified = buildvoiceaiVerified(raw, req.headers['x-signature'], cfg.secret);
    }
    const record = { kind, name, at: Date.now() / 1000, headers: req.headers, body: raw.toString('utf8'), verified };
    fs.appendFileSync(logPath, JSON.stringify(record) + '\n');
    res.writeHead(verified ? 200 : 401, { 'Content-Length': '0' });
    res.end();
  });
}).listen(Number(port), '127.0.0.1', () => console.log('ready'));
