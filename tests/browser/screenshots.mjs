#!/usr/bin/env node
// Screenshots of the /phone page.
//
//   node tests/browser/screenshots.mjs BASEURL OUTDIR [--failed-login EXT:PW] [--demo]
//
// BASEURL: http(s)://127.x.x.x:PORT (the switch, or web/serve.mjs). Writes
//   OUTDIR/phone-login-id.png     login screen, Bahasa Indonesia
//   OUTDIR/phone-login-en.png     login screen, English
//   OUTDIR/phone-login-failed-id.png   after a login the switch refused (or could not be
//                                      reached), with the sentence in error-message
//   OUTDIR/phone-main-id.png      main screen with the dial pad: after a real login when
//                                 --login EXT:PW is given, else the page's ?demo=1 view
//   with --login A --call B (two extensions, a switch with its WebRTC gateway):
//   OUTDIR/phone-incoming-id.png  B's ring panel for A's video call
//   OUTDIR/phone-in-call-id.png, phone-in-call-en.png   A in the answered video call
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { launch, openPhone, login, tid, sleep, call, answer, waitStatus } from './lib.mjs';

const args = process.argv.slice(2);
const pos = [];
let failed = 'nobody:wrong', real = null, callee = null;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--failed-login') failed = args[++i];
  else if (args[i] === '--login') real = args[++i];
  else if (args[i] === '--call') callee = args[++i];
  else pos.push(args[i]);
}
if (pos.length !== 2) {
  console.error('usage: screenshots.mjs BASEURL OUTDIR [--failed-login EXT:PW] [--login EXT:PW]');
  process.exit(2);
}
const [base, outArg] = pos;
const out = resolve(outArg);
mkdirSync(out, { recursive: true });

const split = (s) => { const i = s.indexOf(':'); return [s.slice(0, i), s.slice(i + 1)]; };
const ctx = await launch({ fakeAudio: 'tone' });
const shot = async (page, name) => {
  await sleep(150);
  await page.screenshot({ path: join(out, name), fullPage: true });
  console.log(join(out, name));
};
try {
  let page = await openPhone(ctx, base, { lang: 'id' });
  await shot(page, 'phone-login-id.png');
  await tid(page, 'lang-select').selectOption('en');
  await shot(page, 'phone-login-en.png');
  await tid(page, 'lang-select').selectOption('id');

  const [fe, fp] = split(failed);
  const r = await login(page, fe, fp);
  if (!r.ok) await shot(page, 'phone-login-failed-id.png');
  else console.error(`--failed-login ${failed} was accepted; no failed-login screenshot`);
  await page.close();

  if (real) {
    page = await openPhone(ctx, base, { lang: 'id' });
    const [e, p] = split(real);
    const r2 = await login(page, e, p);
    if (!r2.ok) throw new Error(`login ${e} failed: ${r2.error}`);
    await tid(page, 'directory-note').waitFor({ state: 'visible', timeout: 5000 }).catch(() => {});
  } else {
    page = await openPhone(ctx, base, { lang: 'id', query: { demo: '1' } });
    await page.waitForSelector('[data-testid^="directory-entry-"]', { timeout: 5000 }).catch(() => {});
  }
  await shot(page, 'phone-main-id.png');

  if (real && callee) {
    const b = await openPhone(ctx, base, { lang: 'id' });
    const [be, bp] = split(callee);
    const rb = await login(b, be, bp);
    if (!rb.ok) throw new Error(`login ${be} failed: ${rb.error}`);
    await call(page, be, { video: true });
    await tid(b, 'call-answer').waitFor({ state: 'visible', timeout: 10000 });
    await shot(b, 'phone-incoming-id.png');
    await answer(b, { video: true });
    await waitStatus(page, /Terhubung/);
    await sleep(2500);
    await shot(page, 'phone-in-call-id.png');
    await tid(page, 'lang-select').selectOption('en');
    await shot(page, 'phone-in-call-en.png');
  }
} finally {
  await ctx.closeAll();
}
