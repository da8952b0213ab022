#!/usr/bin/env node
// A long-running driver of the /phone page in headless Chromium (tests/browser/lib.mjs), for
// the Rust interop tests (tests/it/common/browser.rs). One JSON object a line on stdin, one
// reply a line on stdout:
//
//   {"id":N,"cmd":"open","base":"https://127.0.0.1:PORT"}   -> {"id":N,"ok":true,"result":{"page":0,...}}
//   {"id":N,"cmd":"stats","page":0}                          -> {"id":N,"ok":false,"error":"..."}
//
//   node tests/browser/agent.mjs [--tmp DIR] [--deadline SECONDS]
//
// Commands (every one but open and quit takes "page", the index open returned):
//   open {base, query?}            the first one launches Chromium (fake 880 Hz tone as the
//                                  microphone, Chromium's fake camera); opens /phone?ice=rewrite;
//                                  result {page, chromiumPid, log}
//   login {ext, password}          result {ok, reg, regCode, error, errorKey}
//   call {number, video}           dials from the dial pad
//   answer {video, timeout}        waits for the ring panel and answers
//   waitStatus {regex, flags, timeout}  waits until call-status matches; result: its text
//   waitMedia {timeout}            the call is confirmed with a connected PeerConnection
//   stats                          window.tambunPhone.stats() (null without a call)
//   sdp                            {local, remote}: the PeerConnection's current descriptions
//   hold / unhold {timeout}        clicks Tahan / Lanjutkan; waits for "Ditahan" / "Terhubung"
//   hangup                         clicks Tutup
//   videoToggle                    clicks the video on/off button; result {videoOn, renegotiated}
//   errorText                      the visible error-message text, or null
//   state                          window.tambunPhone.state (JSON-safe copy)
//   quit                           closes Chromium and exits 0
//
// The process exits, closing Chromium, when stdin closes, on SIGTERM/SIGINT, and at the hard
// deadline (default 120 s) so it never outlives a test. Its log goes to stderr. Chromium runs
// in its own process group (Playwright starts it detached); its PID is in open's result so
// the owner can kill that group if this process dies first.
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import {
  launch, openPhone, login, call, waitStatus, waitMedia, answer, hangup, stats, errorText,
  phoneState, tid,
} from './lib.mjs';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const TMP = arg('--tmp', undefined);
const DEADLINE_S = Number(arg('--deadline', '120'));
const started = Date.now();
const log = (m) => process.stderr.write(`[agent ${((Date.now() - started) / 1000).toFixed(2)}s] ${m}\n`);

let ctx = null;
let chromiumPid = null;
const pages = [];
let closing = false;

// The Chromium main process: the child of this process that Playwright spawned.
function findChromium() {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // pid (comm) state ppid ...
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === process.pid && /chrom/.test(stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')))) return Number(d);
    } catch (e) { /* gone */ }
  }
  return null;
}

async function shutdown(code, why) {
  if (closing) return;
  closing = true;
  log(`closing (${why})`);
  if (ctx) {
    try { await ctx.closeAll(); } catch (e) { log(`close: ${e}`); }
  }
  if (chromiumPid) {
    try { process.kill(-chromiumPid, 'SIGKILL'); } catch (e) { /* already gone */ }
  }
  process.exit(code);
}

const deadline = setTimeout(() => shutdown(3, `hard deadline ${DEADLINE_S} s`), DEADLINE_S * 1000);
deadline.unref();
process.on('SIGTERM', () => shutdown(0, 'SIGTERM'));
process.on('SIGINT', () => shutdown(0, 'SIGINT'));
process.on('unhandledRejection', (e) => log(`unhandled rejection: ${e && e.stack ? e.stack : e}`));

function page(req) {
  const p = pages[req.page];
  if (!p) throw new Error(`no page ${req.page} (have ${pages.length})`);
  return p;
}

const timeout = (req, dflt) => (typeof req.timeout === 'number' ? req.timeout : dflt);

const commands = {
  async open(req) {
    if (!ctx) {
      ctx = await launch({ fakeAudio: 'tone', tmpdir: TMP });
      chromiumPid = findChromium();
      log(`Chromium up (pid ${chromiumPid}), tmp ${ctx.tambun.tmpdir}`);
    }
    const p = await openPhone(ctx, req.base, { query: req.query || {} });
    pages.push(p);
    return { page: pages.length - 1, chromiumPid, log: p.tambunLog || null };
  },
  async login(req) {
    return login(page(req), req.ext, req.password, { timeout: timeout(req, 15000) });
  },
  async call(req) {
    await call(page(req), req.number, { video: !!req.video });
    return null;
  },
  async answer(req) {
    await answer(page(req), { video: !!req.video, timeout: timeout(req, 15000) });
    return null;
  },
  async waitStatus(req) {
    return waitStatus(page(req), new RegExp(req.regex, req.flags || ''), { timeout: timeout(req, 15000) });
  },
  async waitMedia(req) {
    const c = await waitMedia(page(req), { timeout: timeout(req, 15000) });
    return { status: c.status, video: c.video, pc: c.pc };
  },
  async stats(req) {
    return stats(page(req));
  },
  async sdp(req) {
    return page(req).evaluate(() => {
      const c = window.tambunPhone.state.call;
      const pc = c && c.pcObj;
      return {
        local: pc && pc.currentLocalDescription ? pc.currentLocalDescription.sdp : null,
        remote: pc && pc.currentRemoteDescription ? pc.currentRemoteDescription.sdp : null,
      };
    });
  },
  async hold(req) {
    const p = page(req);
    await tid(p, 'call-hold').click({ timeout: 5000 });
    return waitStatus(p, /^Ditahan/, { timeout: timeout(req, 8000) });
  },
  async unhold(req) {
    const p = page(req);
    await tid(p, 'call-hold').click({ timeout: 5000 });
    return waitStatus(p, /^Terhubung/, { timeout: timeout(req, 8000) });
  },
  async hangup(req) {
    await hangup(page(req));
    return null;
  },
  async videoToggle(req) {
    const p = page(req);
    const before = await p.evaluate(() => window.tambunPhone.state.call.videoOn);
    await tid(p, 'video-toggle').click({ timeout: 5000 });
    await p.waitForFunction((b) => window.tambunPhone.state.call && window.tambunPhone.state.call.videoOn !== b,
      before, { timeout: timeout(req, 8000) });
    return p.evaluate(() => ({
      videoOn: window.tambunPhone.state.call.videoOn,
      renegotiated: window.tambunPhone.state.call.renegotiated || 0,
    }));
  },
  async errorText(req) {
    return errorText(page(req));
  },
  async state(req) {
    return phoneState(page(req));
  },
  /** Clicks the element with data-testid `testid` (waiting for it). */
  async click(req) {
    await tid(page(req), req.testid).click({ timeout: timeout(req, 8000) });
    return null;
  },
  /** Waits until the element `testid` exists (and, with `attr`, has `value` there). */
  async waitFor(req) {
    const p = page(req);
    await p.waitForFunction(([id, attr, value]) => {
      const e = document.querySelector(`[data-testid="${id}"]`);
      return e && (!attr || e.getAttribute(attr) === value);
    }, [req.testid, req.attr || null, req.value === undefined ? null : String(req.value)],
    { timeout: timeout(req, 10000) });
    return null;
  },
  /** Saves a full-page screenshot to `path`. */
  async screenshot(req) {
    await page(req).screenshot({ path: req.path, fullPage: true });
    return null;
  },
  async quit() {
    setImmediate(() => shutdown(0, 'quit'));
    return null;
  },
};

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// One command at a time, in order: the tests drive the pages step by step.
let queue = Promise.resolve();
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    reply({ id: null, ok: false, error: `not JSON: ${line.slice(0, 200)}` });
    return;
  }
  queue = queue.then(async () => {
    const fn = commands[req.cmd];
    if (!fn) return reply({ id: req.id, ok: false, error: `unknown command ${req.cmd}` });
    const t0 = Date.now();
    try {
      const result = await fn(req);
      log(`${req.cmd}${req.page !== undefined ? ' page ' + req.page : ''} ok (${Date.now() - t0} ms)`);
      reply({ id: req.id, ok: true, result: result === undefined ? null : result });
    } catch (e) {
      const msg = String(e && e.message ? e.message : e);
      log(`${req.cmd} failed (${Date.now() - t0} ms): ${msg}`);
      reply({ id: req.id, ok: false, error: msg });
    }
  });
});
// The owner is gone: no point finishing what it asked.
rl.on('close', () => shutdown(0, 'stdin closed'));
log(`ready (pid ${process.pid}, deadline ${DEADLINE_S} s)`);
