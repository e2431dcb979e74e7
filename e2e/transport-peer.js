#!/usr/bin/env node
// Test peer for bridge/tests/browser_transport.rs. Protocol (JSON lines):
//   argv[2]: path of a JSON file {"offer": "<sdp>"}
//   stdout:  {"event":"answer","sdp":...}, then {"event":"stats",...} every 500 ms,
//            {"event":"error","message":...} on failure
//   stdin:   {"cmd":"send","text":...} sends on the data channel; {"cmd":"quit"} or EOF ends.
'use strict';
const fs = require('fs');
const { launch, serve, emit, commands } = require('./lib/browser');

async function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const web = await serve();
  const browser = await launch();
  let done = false;
  const shutdown = async () => {
    if (done) return;
    done = true;
    await browser.close();
    await web.close();
  };
  try {
    const page = await browser.context.newPage();
    page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
    await page.goto(`${web.url}/transport.html`);
    const sdp = await page.evaluate((offer) => window.start(offer), cfg.offer);
    emit({ event: 'answer', sdp });
    const ticker = setInterval(async () => {
      if (done) return;
      try { emit({ event: 'stats', ...(await page.evaluate(() => window.stats())) }); } catch (e) { /* closing */ }
    }, 500);
    for await (const c of commands()) {
      if (c.cmd === 'send') await page.evaluate((t) => window.sendData(t), c.text);
      if (c.cmd === 'quit') break;
    }
    clearInterval(ticker);
  } catch (e) {
    emit({ event: 'error', message: String(e && e.stack || e) });
  } finally {
    await shutdown();
  }
}

main().then(() => process.exit(0), (e) => { emit({ event: 'error', message: String(e) }); process.exit(1); });
