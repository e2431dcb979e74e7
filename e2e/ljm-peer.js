#!/usr/bin/env node
// Drives lib-jitsi-meet participants (one headless Chromium, one page each) for the focus's browser
// tests. Protocol (JSON lines):
//   argv[2]: path of a JSON file {"domain","muc","focus","serviceUrl","room","resolution"?,"frameRate"?,
//            "stockBrowser"?} — stockBrowser: Chromium without the loopback test flag, as users have it
//   stdin:   {"cmd":"join","id":"a"[,"room":…]}  → {"event":"joined","id":"a","endpoint":"…"}
//            {"cmd":"open","id":"a","url":…}      → {"event":"opened","id":"a"} (a page that joins by
//                                                   itself, e.g. the demo page of scripts/run.sh)
//            {"cmd":"stats"}                      → {"event":"stats","pages":{"a":{…ljmStats()…}}}
//            {"cmd":"leave","id":"a"}             → {"event":"left","id":"a"}
//            {"cmd":"screenshot","id":"a","path"} → {"event":"screenshot","id":"a","path":…}
//            {"cmd":"call","id":"a","fn":"ljmX","args":[…]} → {"event":"called","id":"a","result":…}
//                                                   (one of the page's window.ljm* functions)
//   A join may override page settings for that participant: {"cmd":"join","id":"a","resolution":720,
//   "frameRate":15}, or any with "page":{…} (e.g. {"id":"alice@…","password":…} to log in,
//   "anonymousdomain", "waitForHost"); "origin":"localhost" opens the page on another origin (another
//   browser profile's localStorage, as a different person's browser); with "expectFail":true a failed
//   join is {"event":"join-failed","id","message"} instead of an error.
//            {"cmd":"quit"} or EOF ends.
//   errors:  {"event":"error","id"?,"message"}
'use strict';
const fs = require('fs');
const path = require('path');
const { launch, serve, emit, commands } = require('./lib/browser');
const routes = require('./ljm-routes');

async function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  for (const f of Object.values(routes)) {
    if (!fs.existsSync(f)) throw new Error(`${f} missing: run e2e/install.sh`);
  }
  const web = await serve(path.join(__dirname, 'pages'), routes);
  const browser = await launch(['--autoplay-policy=no-user-gesture-required'], { stock: !!cfg.stockBrowser });
  const pages = new Map();
  const run = async (c) => {
    try {
      if (c.cmd === 'join') {
        const page = await browser.context.newPage();
        page.on('console', (m) => process.stderr.write(`[${c.id}] ${m.text()}\n`));
        page.on('pageerror', (e) => process.stderr.write(`[${c.id}] page error: ${e}\n`));
        pages.set(c.id, page);
        const base = c.origin ? web.url.replace('127.0.0.1', c.origin) : web.url;
        await page.goto(`${base}/ljm.html`);
        process.stderr.write(`[driver] ${c.id}: joining\n`);
        const overrides = Object.assign({}, c.page || {});
        if (c.room) overrides.room = c.room;
        if (c.resolution) overrides.resolution = c.resolution;
        if (c.frameRate) overrides.frameRate = c.frameRate;
        let endpoint;
        try {
          endpoint = await page.evaluate((conf) => window.ljmJoin(conf), Object.assign({}, cfg, overrides));
        } catch (e) {
          if (!c.expectFail) throw e;
          emit({ event: 'join-failed', id: c.id, message: String((e && e.message) || e) });
          return;
        }
        process.stderr.write(`[driver] ${c.id}: joined as ${endpoint}\n`);
        emit({ event: 'joined', id: c.id, endpoint });
      } else if (c.cmd === 'open') {
        const page = await browser.context.newPage();
        page.on('console', (m) => process.stderr.write(`[${c.id}] ${m.text()}\n`));
        page.on('pageerror', (e) => process.stderr.write(`[${c.id}] page error: ${e}\n`));
        pages.set(c.id, page);
        await page.goto(c.url);
        emit({ event: 'opened', id: c.id });
      } else if (c.cmd === 'stats') {
        const out = {};
        for (const [id, page] of pages) {
          try { out[id] = await page.evaluate(() => window.ljmStats()); } catch (e) { out[id] = { error: String(e) }; }
        }
        emit({ event: 'stats', pages: out });
      } else if (c.cmd === 'leave') {
        const page = pages.get(c.id);
        pages.delete(c.id);
        if (page) {
          try { await page.evaluate(() => window.ljmLeave()); } catch (_) { /* closing anyway */ }
          await page.close();
        }
        emit({ event: 'left', id: c.id });
      } else if (c.cmd === 'call') {
        const page = pages.get(c.id);
        if (!page) throw new Error(`no page ${c.id}`);
        if (!/^ljm[A-Za-z]+$/.test(c.fn)) throw new Error(`not a page function: ${c.fn}`);
        const result = await page.evaluate(([fn, args]) => window[fn](...args), [c.fn, c.args || []]);
        emit({ event: 'called', id: c.id, fn: c.fn, result: result === undefined ? null : result });
      } else if (c.cmd === 'screenshot') {
        const page = pages.get(c.id);
        await page.screenshot({ path: c.path, fullPage: true });
        emit({ event: 'screenshot', id: c.id, path: c.path });
      }
    } catch (e) {
      emit({ event: 'error', id: c.id, cmd: c.cmd, message: String((e && e.stack) || e) });
    }
  };
  const running = [];
  for await (const c of commands()) {
    if (c.cmd === 'quit') break;
    // Joins run concurrently (each waits for the conference); everything else in order.
    if (c.cmd === 'join') running.push(run(c)); else await run(c);
  }
  await Promise.allSettled(running);
  await browser.close();
  await web.close();
}

main().then(() => process.exit(0), (e) => { emit({ event: 'error', message: String((e && e.stack) || e) }); process.exit(1); });
