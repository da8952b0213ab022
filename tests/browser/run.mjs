#!/usr/bin/env node
// Browser scenarios for the /phone page, through headless Chromium (tests/browser/lib.mjs).
//
//   node tests/browser/run.mjs --base https://127.0.0.1:PORT [--a 1000:pw1000] [--b 1001:pw1001]
//
// Options: --scenarios LIST (comma-separated, default: all that apply), --hold SECONDS (5),
//   --min-packets N (150), --tmp DIR (kept; default a fresh temp dir, removed), --headed.
// Prints one "PASS name ..." / "FAIL name ..." line per scenario; exit 0 when all passed,
// 1 when one failed, 2 on a usage or setup error.
//
// Scenarios:
//   unreachable  page served by web/serve.mjs (no /ws): login shows the "switch unreachable" sentence
//   login-fail   wrong password: error-message is "Nomor ekstensi atau kata sandi salah."
//   register     A and B log in; reg-status shows registered; directory loads (Basic auth)
//   lang         English selected, text changes, choice survives a reload
//   audio        A calls B, B answers; both "Terhubung"; RTP both ways, DTLS connected;
//                mute, hold/unhold (A "Ditahan", B "Ditahan oleh lawan bicara"), DTMF; A hangs up;
//                both "Panggilan berakhir"; history entries on both
//   decline      A calls B, B declines: A shows "Panggilan ditolak."
//   video        A video-calls B, B answers with video: video frames sent and decoded both ways
//   upgrade      audio call, A turns video on (re-INVITE via session.renegotiate), then B; frames
//                decoded on both sides; A turns video off
//   denied       getUserMedia refused (NotAllowedError injected): the microphone sentence
//   remember     "Ingat saya": a reload logs in again; logout forgets
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  launch, openPhone, login, call, waitStatus, waitMedia, answer, decline, hangup, stats,
  errorText, historyEntries, phoneState, tid, fmtStats, sleep, isLoopbackUrl,
} from './lib.mjs';
import { createDevServer, listen } from '../../web/serve.mjs';

const ALL = ['unreachable', 'login-fail', 'register', 'lang', 'audio', 'decline', 'video', 'upgrade', 'denied', 'remember'];

function parseArgs(argv) {
  const o = { base: null, a: '1000:pw1000', b: '1001:pw1001', scenarios: null, hold: 5, minPackets: 150, tmp: null, headed: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => { if (i + 1 >= argv.length) usage(`${k} needs a value`); return argv[++i]; };
    if (k === '--base') o.base = v();
    else if (k === '--a') o.a = v();
    else if (k === '--b') o.b = v();
    else if (k === '--scenarios') o.scenarios = v().split(',').map((s) => s.trim()).filter(Boolean);
    else if (k === '--hold') o.hold = Number(v());
    else if (k === '--min-packets') o.minPackets = Number(v());
    else if (k === '--tmp') o.tmp = v();
    else if (k === '--headed') o.headed = true;
    else usage(`unknown argument ${k}`);
  }
  if (!o.base) usage('need --base URL');
  if (o.base && !isLoopbackUrl(o.base)) usage('--base must be on 127.0.0.0/8');
  for (const s of o.scenarios || []) if (!ALL.includes(s)) usage(`unknown scenario ${s}`);
  return o;
}
function usage(msg) {
  console.error(`run.mjs: ${msg}\nusage: node tests/browser/run.mjs --base URL [--a EXT:PW] [--b EXT:PW] [--scenarios ${ALL.join(',')}] [--hold S] [--tmp DIR]`);
  process.exit(2);
}
const opt = parseArgs(process.argv.slice(2));
const split = (s) => { const i = s.indexOf(':'); return { ext: s.slice(0, i), pw: s.slice(i + 1) }; };
const A = split(opt.a), B = split(opt.b);
const log = (m) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`);

let failed = 0;
function report(name, ok, text) {
  process.stdout.write(`${ok ? 'PASS' : 'FAIL'} ${name}  ${text}\n`);
  if (!ok) failed++;
}

const want = (s) => (opt.scenarios ? opt.scenarios.includes(s) : true);
const hardExit = setTimeout(() => { report('deadline', false, 'run exceeded 300 s'); process.exit(1); }, 300000);
hardExit.unref();

const base = opt.base;
const ownTmp = !opt.tmp;
const tmp = opt.tmp || mkdtempSync(join(tmpdir(), 'tambun-browser.'));
const ctx = await launch({ fakeAudio: 'tone', tmpdir: tmp, headless: !opt.headed });
log(`Chromium up, tmp ${tmp}`);

const minP = opt.minPackets;
const holdMs = opt.hold * 1000;

async function scenario(name, fn) {
  if (!want(name)) return;
  const t0 = Date.now();
  try {
    const text = await fn();
    report(name, true, `${text} (${Date.now() - t0} ms)`);
  } catch (e) {
    report(name, false, String(e && e.message ? e.message : e).split('\n')[0]);
  }
}

function check(cond, msg) { if (!cond) throw new Error(msg); }

async function phonePage(who, query) {
  const p = await openPhone(ctx, base, { query });
  const r = await login(p, who.ext, who.pw);
  check(r.ok, `login ${who.ext}: ${r.error || r.reg}`);
  return p;
}

async function resetCalls(...pages) {
  for (const p of pages) {
    const s = await phoneState(p).catch(() => null);
    if (s && s.call && !['ended', 'failed'].includes(s.call.status)) await hangup(p).catch(() => {});
  }
  await sleep(300);
}

let pa = null, pb = null;

await scenario('unreachable', async () => {
  const dev = createDevServer({});
  const devBase = await listen(dev, 0);
  try {
    const p = await openPhone(ctx, devBase, {});
    const r = await login(p, A.ext, A.pw);
    check(!r.ok && r.errorKey === 'err_unreachable', `expected err_unreachable, got ${r.errorKey}: ${r.error}`);
    await p.close();
    return `"${r.error}"`;
  } finally { dev.close(); }
});

await scenario('login-fail', async () => {
  const p = await openPhone(ctx, base, {});
  const r = await login(p, A.ext, A.pw + '-wrong');
  check(!r.ok, 'login with a wrong password succeeded');
  check(r.error === 'Nomor ekstensi atau kata sandi salah.', `error-message "${r.error}" (reg ${r.reg} ${r.regCode})`);
  await p.close();
  return `${A.ext} wrong password: SIP ${r.regCode}, "${r.error}"`;
});

await scenario('register', async () => {
  pa = await phonePage(A);
  pb = await phonePage(B);
  const ra = await tid(pa, 'reg-status').textContent();
  check(/Terdaftar/.test(ra), `reg-status "${ra}"`);
  await pa.waitForSelector('[data-testid^="directory-entry-"]', { timeout: 5000 });
  const entries = await pa.$$eval('[data-testid^="directory-entry-"]', (els) => els.map((e) => e.dataset.ext));
  await tid(pa, 'directory-search').fill(B.ext);
  const filtered = await pa.$$eval('[data-testid^="directory-entry-"]', (els) => els.map((e) => e.dataset.ext));
  check(filtered.every((x) => x.includes(B.ext)) || filtered.length === 0, `search ${B.ext} left ${filtered}`);
  if (filtered.length) {
    await tid(pa, 'directory-entry-' + filtered[0]).click();
    const v = await tid(pa, 'dial-input').inputValue();
    check(v === filtered[0], `clicking directory entry filled "${v}"`);
  }
  await tid(pa, 'directory-search').fill('');
  await tid(pa, 'dial-input').fill('');
  return `A ${A.ext} "${ra}", B ${B.ext} registered; directory ${entries.length} entries, search "${B.ext}" -> ${filtered.join(' ') || 'none'}`;
});

await scenario('lang', async () => {
  const p = await openPhone(ctx, base, {});
  await tid(p, 'lang-select').selectOption('en');
  const t1 = await tid(p, 'login-submit').textContent();
  const r1 = await p.getByText('Remember me').count();
  await p.reload();
  await p.waitForFunction(() => window.tambunPhone && window.tambunPhone.ready);
  const kept = await tid(p, 'lang-select').inputValue();
  const t2 = await tid(p, 'login-submit').textContent();
  await tid(p, 'lang-select').selectOption('id');
  const t3 = await tid(p, 'login-submit').textContent();
  await p.close();
  check(t1 === 'Log in' && r1 === 1 && kept === 'en' && t2 === 'Log in' && t3 === 'Masuk', `texts ${t1}/${r1}/${kept}/${t2}/${t3}`);
  // the other pages re-read nothing: the language applies on load and on change
  return 'en: "Log in", "Remember me"; kept after reload; back to id: "Masuk"';
});

await scenario('audio', async () => {
  check(pa && pb, 'needs register');
  await call(pa, B.ext);
  await waitStatus(pa, /Memanggil|Berdering/);
  await tid(pb, 'ring-panel').waitFor({ state: 'visible', timeout: 10000 });
  const caller = await tid(pb, 'incoming-caller').textContent();
  check(caller.includes(A.ext), `ring panel shows "${caller}"`);
  const ringing = await tid(pa, 'call-status').textContent();
  await answer(pb);
  await waitMedia(pa);
  await waitMedia(pb);
  await waitStatus(pa, /^Terhubung \d\d:\d\d$/);
  await waitStatus(pb, /^Terhubung \d\d:\d\d$/);
  await sleep(holdMs);
  const sa = await stats(pa), sb = await stats(pb);
  for (const [n, s] of [['A', sa], ['B', sb]]) {
    check(s && s.packetsSent > minP && s.packetsReceived > minP, `${n} RTP ${fmtStats(s)}`);
    check(s.dtlsState === 'connected', `${n} DTLS ${s.dtlsState}`);
    check(s.localCandidate && s.localCandidate.startsWith('127.'), `${n} local candidate ${s.localCandidate}`);
  }
  // mute
  await tid(pa, 'call-mute').click();
  const muted = await pa.evaluate(() => window.tambunPhone.state.call.muted);
  const pressed = await tid(pa, 'call-mute').getAttribute('aria-pressed');
  await tid(pa, 'call-mute').click();
  check(muted && pressed === 'true', `mute: state ${muted}, aria-pressed ${pressed}`);
  // hold / unhold (re-INVITE a=sendonly / a=sendrecv)
  await tid(pa, 'call-hold').click();
  await waitStatus(pa, /^Ditahan/);
  await waitStatus(pb, /Ditahan oleh lawan bicara/);
  await tid(pa, 'call-hold').click();
  await waitStatus(pa, /^Terhubung/);
  await waitStatus(pb, /^Terhubung/);
  // DTMF from the dial pad while in the call
  await tid(pa, 'dialpad-5').click();
  await tid(pa, 'dialpad-hash').click();
  const dt = await pa.evaluate(() => ({ d: window.tambunPhone.state.call.dtmf, t: window.tambunPhone.state.call.dtmfTransport }));
  check(dt.d === '5#', `dtmf "${dt.d}"`);
  await sleep(500);
  const dtIn = await pb.evaluate(() => window.tambunPhone.state.call.dtmfIn);
  await hangup(pa);
  await waitStatus(pa, /Panggilan berakhir/);
  await waitStatus(pb, /Panggilan berakhir/);
  const ha = (await historyEntries(pa))[0], hb = (await historyEntries(pb))[0];
  check(ha && ha.direction === 'out' && ha.number === B.ext && ha.result === 'answered', `A history ${JSON.stringify(ha)}`);
  check(hb && hb.direction === 'in' && hb.number === A.ext && hb.result === 'answered', `B history ${JSON.stringify(hb)}`);
  return `"${ringing}" -> answered; A ${fmtStats(sa)}; B ${fmtStats(sb)}; mute ok, hold/unhold ok, DTMF 5# via ${dt.t}` +
    `${dtIn ? ' (B got INFO ' + dtIn + ')' : ''}; history ok`;
});

await scenario('decline', async () => {
  check(pa && pb, 'needs register');
  await resetCalls(pa, pb);
  await call(pa, B.ext);
  await decline(pb);
  await waitStatus(pa, /Panggilan (gagal|berakhir)/);
  const e = await errorText(pa);
  check(e === 'Panggilan ditolak.', `A error-message "${e}"`);
  const hb = (await historyEntries(pb))[0];
  check(hb && hb.result === 'declined', `B history ${JSON.stringify(hb)}`);
  return `A: "${e}", B history: declined`;
});

async function waitFrames(page, field, min, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let s;
  while (Date.now() < end) {
    s = await stats(page);
    if (s && s.video && s.video[field] > min) return s;
    await sleep(250);
  }
  throw new Error(`${field} never > ${min}: ${JSON.stringify(s && s.video)}`);
}

await scenario('video', async () => {
  check(pa && pb, 'needs register');
  await resetCalls(pa, pb);
  await call(pa, B.ext, { video: true });
  await tid(pb, 'call-answer-video').waitFor({ state: 'visible', timeout: 10000 });
  await answer(pb, { video: true });
  await waitMedia(pa);
  await waitMedia(pb);
  const sa = await waitFrames(pa, 'framesDecoded', 20, 10000);
  const sb = await waitFrames(pb, 'framesDecoded', 20, 10000);
  check(sa.video.framesSent > 20 && sb.video.framesSent > 20, `framesSent A ${sa.video.framesSent} B ${sb.video.framesSent}`);
  const vis = await tid(pa, 'remote-video').isVisible();
  check(vis, 'A remote-video hidden');
  await hangup(pa);
  await waitStatus(pb, /Panggilan berakhir/);
  return `A sent ${sa.video.framesSent} decoded ${sa.video.framesDecoded} (${sa.video.codecRecv}, ${sa.video.frameWidth}x${sa.video.frameHeight}); B sent ${sb.video.framesSent} decoded ${sb.video.framesDecoded}`;
});

await scenario('upgrade', async () => {
  check(pa && pb, 'needs register');
  await resetCalls(pa, pb);
  await call(pa, B.ext);
  await answer(pb);
  await waitMedia(pa);
  await waitMedia(pb);
  await tid(pa, 'video-toggle').click();   // addTrack + renegotiate (re-INVITE with m=video)
  const sb = await waitFrames(pb, 'framesDecoded', 10, 10000);
  await tid(pb, 'video-toggle').click();   // B's video transceiver was recvonly: addTrack + renegotiate
  const sa = await waitFrames(pa, 'framesDecoded', 10, 10000);
  const ren = await pa.evaluate(() => window.tambunPhone.state.call.renegotiated);
  await tid(pa, 'video-toggle').click();   // off: replaceTrack(null), no re-INVITE
  await sleep(600);
  const s1 = await stats(pa);
  await sleep(1000);
  const s2 = await stats(pa);
  const still = (s2.video.framesSent || 0) - (s1.video.framesSent || 0);
  const status = await tid(pa, 'call-status').textContent();
  check(/^Terhubung/.test(status), `A status after video toggles "${status}"`);
  check(still <= 2, `A still sends video after turning it off (${still} frames in 1 s)`);
  await hangup(pa);
  await waitStatus(pb, /Panggilan berakhir/);
  return `audio call -> A video on (${ren} re-INVITE): B decoded ${sb.video.framesDecoded}; B video on: A decoded ${sa.video.framesDecoded}; A video off: ${still} frames in the next 1 s`;
});

await scenario('denied', async () => {
  const p = await ctx.newPage();
  await p.addInitScript(() => {
    const deny = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    if (navigator.mediaDevices) navigator.mediaDevices.getUserMedia = deny;
  });
  await p.goto(`${base}/phone?ice=rewrite`);
  await p.waitForFunction(() => window.tambunPhone && window.tambunPhone.ready);
  const r = await login(p, A.ext, A.pw);
  check(r.ok, `login: ${r.error}`);
  await call(p, B.ext);
  await tid(p, 'error-message').waitFor({ state: 'visible', timeout: 5000 });
  const e = await errorText(p);
  check(/^Izin memakai mikrofon atau kamera ditolak/.test(e), `error-message "${e}"`);
  await tid(p, 'logout').click();
  await p.close();
  return `"${e}"`;
});

await scenario('remember', async () => {
  const p = await openPhone(ctx, base, {});
  const r = await login(p, A.ext, A.pw, { remember: true });
  check(r.ok, `login: ${r.error}`);
  await p.reload();
  await p.waitForFunction(() => window.tambunPhone.state.loggedIn, null, { timeout: 10000 });
  const stored = await p.evaluate(() => !!localStorage.getItem('tambun.phone.remember'));
  await tid(p, 'logout').click();
  const after = await p.evaluate(() => localStorage.getItem('tambun.phone.remember'));
  await p.reload();
  await p.waitForFunction(() => window.tambunPhone && window.tambunPhone.ready);
  await sleep(500);
  const s = await phoneState(p);
  await p.close();
  check(stored && after === null && !s.loggedIn, `stored ${stored}, after logout ${after}, logged in after reload ${s.loggedIn}`);
  return 'reload logs in again; logout forgets the password';
});

for (const p of [pa, pb]) if (p) await tid(p, 'logout').click().catch(() => {});
await sleep(300);
await ctx.closeAll();
if (ownTmp && failed === 0) rmSync(tmp, { recursive: true, force: true });
else log(`kept ${tmp}`);
process.stdout.write(`RESULT ${failed ? 'FAIL' : 'PASS'}\n`);
process.exit(failed ? 1 : 0);
