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

// Fake camera and microphone, no background network traffic (the machine's network is closed). A stock
// browser uses no loopback address for WebRTC; tests that keep media on 127.0.0.1 add
// LOOPBACK_FLAG, tests of what users get (`stock: true`) do not.
const LOOPBACK_FLAG = '--allow-loopback-in-peer-connection';
const STOCK_FLAGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const FLAGS = [...STOCK_FLAGS, LOOPBACK_FLAG];

/**
 * Launches Chromium with a fresh profile; returns { context, close }. `stock` leaves out the loopback
 * test flag, as a user's browser is.
 */
async function launch(extraArgs = [], { stock = false } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`chromium not found at ${CHROMIUM} (run scripts/install-deps.sh)`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...(stock ? STOCK_FLAGS : FLAGS), ...extraArgs],
  });
  const close = async () => {
    try { await context.close(); } catch (_) { /* already gone */ }
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close };
}

const TYPES = { '.html': 'text/html', '.js': 'application/javascript', '.json': 'application/json' };

/**
 * Serves `dir` on `host` (127.0.0.1 unless given; random port, or `port`); returns { url, close }.
 * `routes` maps extra URL paths to files outside `dir` (e.g. vendored scripts) or to functions
 * returning a body.
 */
async function serve(dir = path.join(__dirname, '..', 'pages'), routes = {}, port = 0, host = '127.0.0.1') {
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
    server.listen(port, host, resolve);
  });
  const bound = server.address().port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return { url: `http://${shown}:${bound}`, close: () => new Promise((r) => server.close(r)) };
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

module.exports = { launch, serve, emit, commands, FLAGS, STOCK_FLAGS };
