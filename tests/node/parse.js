// Feeds requests to LeadConduit's standard inbound module (npm leadconduit-default, lib/inbound.js) and prints
// what its parse returns, for tests/functional/test_inbound_parity.py.
//
//   node tests/node/parse.js NODE_MODULES_DIR < requests.json > results.json
//
// stdin: a JSON array of {"method", "uri", "headers": {name: value}, "body_base64"} (body_base64 null: no body).
// stdout: a JSON array, one per request, in order: {"ok": true, "fields": <the parse>} or
// {"ok": false, "status": <HTTP status>, "message": <text>}.
//
// What this file does beyond calling inbound.request(): it turns the body's bytes into the string the module is
// given. LeadConduit's HTTP layer does that before the module runs, and it is not public; firehose decodes by
// the Content-Type's charset (ISO-8859-1 and its aliases as Latin-1, anything else as UTF-8, invalid bytes as
// U+FFFD), and so does this driver, so that both sides parse the same text.
'use strict';

const path = require('path');

const modules = process.argv[2];
if (!modules) {
  process.stderr.write('usage: node parse.js NODE_MODULES_DIR < requests.json\n');
  process.exit(2);
}
const inbound = require(path.join(path.resolve(modules), 'leadconduit-default', 'lib', 'inbound.js'));

const LATIN1 = new Set([
  'iso-8859-1', 'iso8859-1', 'iso_8859-1', 'iso_8859-1:1987', 'latin1', 'latin-1', 'l1', 'cp819', 'ibm819',
  'iso-ir-100', 'csisolatin1', '8859', 'iso8859_1', 'latin'
]);

function charsetOf(contentType) {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType || '');
  return match ? match[1].toLowerCase() : '';
}

function bodyText(buffer, contentType) {
  return buffer.toString(LATIN1.has(charsetOf(contentType)) ? 'latin1' : 'utf8');
}

// xmldom reports recoverable XML errors on the console; they are not part of the answer.
console.error = () => {};
console.warn = () => {};
console.log = () => {};

function run(request) {
  const req = {
    method: request.method,
    uri: request.uri,
    version: '1.1',
    headers: request.headers || {},
    body: request.body_base64 == null ? undefined : bodyText(Buffer.from(request.body_base64, 'base64'), (request.headers || {})['Content-Type'])
  };
  try {
    const fields = inbound.request(req);
    return { ok: true, fields: fields === undefined ? null : fields };
  } catch (error) {
    if (error && error.status) {
      return { ok: false, status: error.status, message: String(error.body || error.message || '') };
    }
    return { ok: false, status: 500, message: String(error && error.stack || error) };
  }
}

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const requests = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  process.stdout.write(JSON.stringify(requests.map(run)));
});
