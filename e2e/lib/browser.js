// Reusable browser harness: launches the system Chromium (never a downloaded one) headless with
// fake camera and microphone, and serves e2e/pages over HTTP on 127.0.0.1 (a secure context,
// so getUserMedia works).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// Flags from shared/real-peers.md, plus loopback candidates so ICE can stay on 127.0.0.1.
const FLAGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--allow-loopback-in-peer-connection',
];

/** Launches Chromium with a fresh profile; returns { context, close }. */
async function launch(extraArgs = []) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`chromium not found at ${CHROMIUM} (run scripts/install-deps.sh)`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...FLAGS, ...extraArgs],
  });
  const close = async () => {
    try { await context.close(); } catch (_) { /* already gone */ }
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close };
}

const TYPES = { '.html': 'text/html', '.js': 'application/javascript', '.json': 'application/json' };

/**
 * Serves `dir` on 127.0.0.1 (random port, or `port`); returns { url, close }. `routes` maps extra URL
 * paths to files outside `dir` (e.g. vendored scripts) or to functions returning a body.
 */
async function serve(dir = path.join(__dirname, '..', 'pages'), routes = {}, port = 0) {
  const root = path.resolve(dir);
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent((req.url || '/').split('?')[0]);
    const route = routes[rel];
    if (typeof route === 'function') {
      res.writeHead(200, { 'content-type': TYPES[path.extname(rel)] || 'text/plain' });
      res.end(route());
      return;
    }
    const file = route ? path.resolve(route) : path.resolve(root, '.' + rel);
    if ((!route && !file.startsWith(root)) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const bound = server.address().port;
  return { url: `http://127.0.0.1:${bound}`, close: () => new Promise((r) => server.close(r)) };
}

/** Writes one JSON line to stdout (the test reads them). */
function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Async iterator over JSON lines from stdin. */
async function* commands() {
  let buf = '';
  for await (const chunk of process.stdin) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) yield JSON.parse(line);
    }
  }
}

module.exports = { launch, serve, emit, commands, FLAGS };
