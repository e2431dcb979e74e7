#!/usr/bin/env node
// Test peers for bridge/tests/browser_bridge.rs: one headless Chromium, one page per participant
// (e2e/pages/bridge-peer.html). Protocol (JSON lines):
//   stdin:  {"cmd":"open","peer":"a"}             → {"event":"opened","peer":"a"}
//           {"cmd":"open","peer":"a","page":"svc-peer.html","opts":{...}} opens another page of
//                                                  e2e/pages, whose window.init gets opts
//           {"cmd":"call","peer":"a","fn":"name","arg":...} → {"event":"result","peer":"a","fn":"name","value":...}
//                                                  (window[fn](arg) in that peer's page)
//           {"cmd":"offer","peer":"a","sdp":...}  → {"event":"answer","peer":"a","sdp":...}
//           {"cmd":"send","peer":"a","text":...}  sends on that peer's data channel
//           {"cmd":"quit"} or EOF ends.
//   stdout: {"event":"ready"} once the browser runs; {"event":"stats","peer":...,"t":<ms since epoch
//           when taken>} every 500 ms per open peer; {"event":"error","peer":...,"message":...} on failure.
// Commands of one peer run in order; different peers proceed independently.
'use strict';
const { launch, serve, emit, commands } = require('./lib/browser');

async function main() {
  const web = await serve();
  // Remote audio must play without a user gesture (the page attaches it to <audio> elements).
  const browser = await launch(['--autoplay-policy=no-user-gesture-required']);
  const pages = new Map();
  const queues = new Map();
  let done = false;
  emit({ event: 'ready' });
  const ticker = setInterval(async () => {
    for (const [peer, page] of pages) {
      if (done) return;
      try { const st = await page.evaluate(() => window.stats()); emit({ event: 'stats', peer, t: Date.now(), ...st }); } catch (e) { /* closing */ }
    }
  }, 500);
  const run = (peer, f) => {
    const prev = queues.get(peer) || Promise.resolve();
    const next = prev.then(f).catch((e) => emit({ event: 'error', peer, message: String(e && e.stack || e) }));
    queues.set(peer, next);
  };
  try {
    for await (const c of commands()) {
      if (c.cmd === 'quit') break;
      const peer = c.peer;
      if (c.cmd === 'open') {
        run(peer, async () => {
          const page = await browser.context.newPage();
          page.on('console', (m) => process.stderr.write(`[${peer}] ${m.text()}\n`));
          await page.goto(`${web.url}/${c.page || 'bridge-peer.html'}`);
          await page.evaluate((opts) => window.init(opts), c.opts || {});
          pages.set(peer, page);
          emit({ event: 'opened', peer });
        });
      } else if (c.cmd === 'offer') {
        run(peer, async () => {
          const sdp = await pages.get(peer).evaluate((offer) => window.answer(offer), c.sdp);
          emit({ event: 'answer', peer, sdp });
        });
      } else if (c.cmd === 'call') {
        run(peer, async () => {
          const value = await pages.get(peer).evaluate(({ fn, arg }) => window[fn](arg), { fn: c.fn, arg: c.arg });
          emit({ event: 'result', peer, fn: c.fn, value: value === undefined ? null : value });
        });
      } else if (c.cmd === 'send') {
        run(peer, async () => { await pages.get(peer).evaluate((t) => window.sendData(t), c.text); });
      }
    }
  } finally {
    done = true;
    clearInterval(ticker);
    await browser.close();
    await web.close();
  }
}

main().then(() => process.exit(0), (e) => { emit({ event: 'error', message: String(e) }); process.exit(1); });
