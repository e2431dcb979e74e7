#!/usr/bin/env node
// The local deployment's demo page (scripts/run.sh): serves e2e/pages/ljm.html with lib-jitsi-meet,
// jQuery and a /config.js that points the page at the local Prosody. Usage:
//   node demo-server.js <port> <config.json> [listen-address, default 127.0.0.1]
// config.json: {"domain","muc","focus","serviceUrl" or "websocketPort","room","resolution"?,
// "mediaPort"?,"mediaAddresses"?} (see e2e/pages/ljm.js). Prints the URL on stdout.
'use strict';
const fs = require('fs');
const path = require('path');
const { serve } = require('./lib/browser');
const routes = require('./ljm-routes');

async function main() {
  const port = Number(process.argv[2] || 0);
  const cfg = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
  for (const f of Object.values(routes)) {
    if (!fs.existsSync(f)) throw new Error(`${f} missing: run e2e/install.sh`);
  }
  const all = Object.assign({}, routes, {
    '/': path.join(__dirname, 'pages', 'ljm.html'),
    '/config.js': () => `window.LJM_CONFIG = ${JSON.stringify(cfg)};\n`,
  });
  const web = await serve(path.join(__dirname, 'pages'), all, port, process.argv[4] || '127.0.0.1');
  process.stdout.write(`${web.url}/?room=${encodeURIComponent(cfg.room)}\n`);
  const stop = () => web.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => { process.stderr.write(`demo-server: ${e}\n`); process.exit(1); });
