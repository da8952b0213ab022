#!/usr/bin/env node
// The operator console (/console) in headless Chromium, against a running `tambun serve`:
//
//   node tests/browser/console.mjs --base https://127.0.0.1:PORT --out DIR \
//     --admin NAME:PW --opd NAME:PW:OPD --lock NAME:PW --csv FILE --bad-line N \
//     --find-ext EXT --opd-records N [--live-call EXT] [--deadline SECS]
//
// Scenarios, in order (each prints PASS/FAIL NAME; the last line is RESULT PASS|FAIL):
//   login-page     the login form in Bahasa Indonesia                 → console-login.png
//   admin-login    admin logs in; the dashboard lists every OPD and the trunk's carriers
//                  (a failing one also as a warning) (and, with --live-call, the
//                  call in progress of EXT, whose OPD shows one registration) → console-dashboard.png
//   english        the language toggle turns the page English         → console-dashboard-en.png
//   import         CSV import: the good lines in, the bad line reported with its number
//                                                                     → console-extensions.png
//   ext-edit       rename and disable an extension, reset another's password
//   cdr            a search by extension finds its call record and exports it as CSV
//                                                                     → console-cdr.png
//   usage          the usage charts of this month have minutes, by day and by number class
//                                                                     → console-usage.png
//   bans           a ban added from the console is listed             → console-bans.png
//   opd-scope      the opd operator sees only its OPD's extensions and records; the
//                  server refuses it bans and another OPD's extension  → console-opd-extensions.png,
//                                                                       console-opd-cdr.png
//   lockout        wrong passwords lock the account; the right one is then refused too, and
//                  a wrong name answers as a wrong password           → console-locked.png
// Loopback only; screenshots go to DIR.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { launch, isLoopbackUrl, sleep } from './lib.mjs';

const args = process.argv.slice(2);
const opt = {};
for (let i = 0; i < args.length; i += 2) opt[args[i].replace(/^--/, '')] = args[i + 1];
for (const k of ['base', 'out', 'admin', 'opd', 'lock', 'csv', 'bad-line', 'find-ext', 'opd-records']) {
  if (!opt[k]) { console.error(`console.mjs: --${k} is required`); process.exit(2); }
}
if (!isLoopbackUrl(opt.base)) { console.error('console.mjs: --base must be a 127.x URL'); process.exit(2); }
const deadline = Number(opt.deadline || 150);
setTimeout(() => { console.log('FAIL deadline'); console.log('RESULT FAIL'); process.exit(1); }, deadline * 1000).unref();

const out = resolve(opt.out);
mkdirSync(out, { recursive: true });
const [adminUser, adminPw] = opt.admin.split(':');
const [opdUser, opdPw, opdCode] = opt.opd.split(':');
const [lockUser, lockPw] = opt.lock.split(':');

let failed = 0;
const results = [];
async function scenario(name, fn) {
  try { await fn(); console.log(`PASS ${name}`); results.push(name); } catch (e) {
    failed++; console.log(`FAIL ${name}: ${(e && e.stack) || e}`);
  }
}
function check(cond, what) { if (!cond) throw new Error(what); }

const ctx = await launch({ tmpdir: join(out, 'chromium') });
const page = await ctx.newPage();
page.on('console', (m) => { if (m.type() === 'error') console.log(`page console: ${m.text()}`); });
page.on('pageerror', (e) => console.log(`page error: ${e}`));
const tid = (id) => page.getByTestId(id);
const shot = async (name) => { await sleep(200); await page.screenshot({ path: join(out, name), fullPage: true }); };
const waitLoaded = async (name) => {
  await page.waitForFunction((n) => (document.body.dataset.loaded || '').startsWith(`${n}-`) && !document.querySelector(`#page-${n}`).hidden, name, { timeout: 15000 });
};
async function go(name) {
  const before = await page.evaluate(() => document.body.dataset.loaded || '');
  await tid(`nav-${name}`).click();
  await page.waitForFunction(([n, b]) => (document.body.dataset.loaded || '') !== b && (document.body.dataset.loaded || '').startsWith(`${n}-`), [name, before], { timeout: 15000 });
}
async function login(user, pw) {
  await tid('login-user').fill(user);
  await tid('login-password').fill(pw);
  await tid('login-submit').click();
}
async function loginError() {
  await tid('login-error').waitFor({ state: 'visible', timeout: 20000 });
  return { text: await tid('login-error').textContent(), key: await tid('login-error').getAttribute('data-key') };
}
const rowsOf = (table) => page.evaluate((t) => [...document.querySelectorAll(`[data-testid="${t}"] tbody tr`)].map((r) => [...r.cells].map((c) => c.textContent.trim())), table);

await page.goto(`${opt.base}/console`, { waitUntil: 'load' });
await page.waitForFunction(() => window.tambunConsole && window.tambunConsole.ready, null, { timeout: 15000 });

await scenario('login-page', async () => {
  await tid('login-user').waitFor({ state: 'visible' });
  check((await tid('login-submit').textContent()).includes('Masuk'), 'the login button is not in Bahasa Indonesia');
  await shot('console-login.png');
});

await scenario('admin-login', async () => {
  await login(adminUser, adminPw);
  await waitLoaded('dashboard');
  const rows = await rowsOf('regs-table');
  check(rows.length >= 40, `the dashboard lists ${rows.length} OPDs`);
  check(rows.some((r) => r[0] === 'setda'), 'setda is not on the dashboard');
  check(!(await tid('nav-bans').isHidden()), 'an admin does not see the bans page');
  const trunks = await page.evaluate(() => [...document.querySelectorAll('[data-testid="trunk-table"] tbody tr[data-trunk]')].map((r) => ({ name: r.dataset.trunk, healthy: r.dataset.healthy })));
  check(trunks.length >= 1, 'the dashboard shows no carrier of the trunk');
  const warnings = await page.evaluate(() => [...document.querySelectorAll('[data-testid="warnings-list"] li')].map((l) => l.dataset.key));
  console.log(`trunks: ${JSON.stringify(trunks)}; warnings: ${JSON.stringify(warnings)}`);
  check(trunks.every((k) => k.healthy === 'true') || warnings.includes('trunk-down'), 'a failing carrier without a warning');
  // setda's budget: 4 of 5 minutes (80 %) used this month.
  check(warnings.includes('budget-warning'), `no budget warning at 80 %: ${JSON.stringify(warnings)}`);
  if (opt['live-call']) {
    const calls = await rowsOf('calls-table');
    check(calls.length === 1 && calls[0][0].startsWith(opt['live-call']), `calls in progress: ${JSON.stringify(calls)}`);
    check(rows.find((r) => r[0] === 'setda')[3] === '1', `setda's registrations: ${JSON.stringify(rows.find((r) => r[0] === 'setda'))}`);
  }
  await tid('warnings-panel').waitFor();
  await shot('console-dashboard.png');
});

await scenario('english', async () => {
  await tid('lang-toggle').selectOption('en');
  await page.waitForFunction(() => document.documentElement.lang === 'en');
  check((await tid('nav-extensions').textContent()) === 'Extensions', 'the nav is not English');
  await sleep(300);
  await shot('console-dashboard-en.png');
  await tid('lang-toggle').selectOption('id');
  await sleep(300);
});

await scenario('import', async () => {
  await go('extensions');
  await tid('ext-import-file').setInputFiles(opt.csv);
  await tid('ext-import-submit').click();
  await page.waitForFunction(() => ['done', 'failed'].includes(document.querySelector('[data-testid="ext-import-report"]').dataset.state), null, { timeout: 30000 });
  const state = await tid('ext-import-report').getAttribute('data-state');
  check(state === 'done', `the import ${state}: ${await tid('ext-import-report').textContent()}`);
  const imported = Number(await tid('ext-import-count').getAttribute('data-imported'));
  check(imported >= 1, `imported ${imported}`);
  const progressed = Number(await tid('ext-import-report').getAttribute('data-progress'));
  check(progressed === imported, `the progress stopped at ${progressed} of ${imported}`);
  const bad = await page.evaluate(() => [...document.querySelectorAll('[data-testid="ext-import-bad"]')].map((e) => Number(e.dataset.line)));
  check(bad.length === 1 && bad[0] === Number(opt['bad-line']), `bad lines reported: ${JSON.stringify(bad)}`);
  console.log(`import: ${imported} imported, bad line ${bad[0]}: ${await tid('ext-import-bad').textContent()}`);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="ext-table"] tbody tr').length > 0);
  await shot('console-extensions.png');
});

await scenario('ext-edit', async () => {
  // Rename and disable an imported extension, reset another's password (shown once).
  page.once('dialog', (d) => d.accept('Nama Baru'));
  await tid('ext-rename-1100').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="ext-name-1100"]').textContent === 'Nama Baru', null, { timeout: 10000 });
  await tid('ext-toggle-1100').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="ext-status-1100"]').textContent.includes('nonaktif'), null, { timeout: 10000 });
  page.once('dialog', (d) => d.accept());
  await tid('ext-reset-1101').click();
  await tid('ext-secret').waitFor({ state: 'visible', timeout: 10000 });
  const secret = await tid('ext-secret').textContent();
  check(/1101: [A-Za-z0-9]{16} /.test(secret), `no new password shown: ${secret}`);
});

await scenario('cdr', async () => {
  await go('cdr');
  await tid('cdr-ext').fill(opt['find-ext']);
  const before = await page.evaluate(() => document.body.dataset.loaded);
  await tid('cdr-search').click();
  await page.waitForFunction((e) => [...document.querySelectorAll('[data-testid="cdr-table"] tbody tr')].length > 0
    && [...document.querySelectorAll('[data-testid="cdr-table"] tbody tr')].every((r) => r.textContent.includes(e)), opt['find-ext'], { timeout: 15000 });
  const rows = await rowsOf('cdr-table');
  check(rows.length >= 1, 'no call record found');
  const href = await tid('cdr-export').getAttribute('href');
  check(href.includes(`ext=${opt['find-ext']}`), `the export link ignores the search: ${href}`);
  const csv = await page.evaluate(async (h) => (await fetch(h)).text(), href);
  check(csv.split('\n')[0].startsWith('id,start_wib,caller'), 'the CSV export has no header');
  check(csv.includes(opt['find-ext']), 'the CSV export lacks the record');
  void before;
  await shot('console-cdr.png');
});

await scenario('usage', async () => {
  await go('usage');
  const points = Number(await tid('usage-chart').getAttribute('data-points'));
  check(points >= 1, `the chart has ${points} days with minutes`);
  const classes = await page.evaluate(() => window.tambunConsole.usage.per_class.map((c) => c.class));
  check(classes.includes('internal') && classes.includes('mobile'), `number classes: ${JSON.stringify(classes)}`);
  const top = await rowsOf('usage-top');
  check(top.length >= 1, 'no top callers');
  // Budget used this month: setda at 80 % (4 of 5 minutes), shown as nearly used up.
  const budget = await page.evaluate(() => [...document.querySelectorAll('[data-testid="usage-budget"] tbody tr[data-opd]')].map((r) => ({ opd: r.dataset.opd, state: r.dataset.state, percent: r.dataset.percent })));
  check(budget.some((b) => b.opd === 'setda' && b.state === 'warning' && b.percent === '80'), `budget used: ${JSON.stringify(budget)}`);
  await shot('console-usage.png');
});

await scenario('bans', async () => {
  await go('bans');
  await tid('ban-address').fill('192.0.2.77');
  await tid('ban-duration').fill('1h');
  await tid('ban-reason').fill('uji konsol');
  await tid('ban-add').click();
  await page.waitForSelector('[data-testid="ban-table"] tr[data-address="192.0.2.77"]', { timeout: 10000 });
  await shot('console-bans.png');
});

await scenario('opd-scope', async () => {
  await tid('logout').click();
  await tid('login-user').waitFor({ state: 'visible' });
  await login(opdUser, opdPw);
  await waitLoaded('dashboard');
  const regs = await rowsOf('regs-table');
  check(regs.length === 1 && regs[0][0] === opdCode, `the dashboard of ${opdCode} shows ${JSON.stringify(regs.map((r) => r[0]))}`);
  if (opt['live-call']) {
    const calls = await rowsOf('calls-table');
    check(calls.length === 1 && calls[0].join(' ').includes(`(${opdCode})`), `${opdCode}'s calls in progress: ${JSON.stringify(calls)}`);
  }
  check(await tid('nav-bans').isHidden(), 'an opd operator sees the bans page');
  check(await tid('trunk-panel').isHidden(), 'an opd operator sees the trunk panel');
  check((await page.evaluate(() => document.querySelectorAll('[data-testid="warnings-list"] li').length)) === 0, 'an opd operator sees the trunk warnings');
  await go('extensions');
  const exts = await rowsOf('ext-table');
  check(exts.length >= 1, 'no extensions shown');
  check(exts.every((r) => r[1] === opdCode), `other OPDs' extensions shown: ${JSON.stringify(exts)}`);
  await shot('console-opd-extensions.png');
  await go('cdr');
  check((await tid('cdr-ext').inputValue()) === '', 'the admin\'s search survived the logout');
  const cdrs = await rowsOf('cdr-table');
  check(cdrs.length >= 1, 'no call records shown');
  check(cdrs.every((r) => r.join(' ').includes(`(${opdCode})`)), `records of other OPDs shown: ${JSON.stringify(cdrs)}`);
  check(cdrs.length === Number(opt['opd-records']), `${cdrs.length} records shown, ${opt['opd-records']} expected`);
  await shot('console-opd-cdr.png');
  // The server, not the page, enforces the scope.
  const answers = await page.evaluate(async () => {
    const csrf = window.tambunConsole.me.csrf;
    const post = (p, body) => fetch(`/console/api/${p}`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: JSON.stringify(body) }).then((r) => r.status);
    return {
      bans: await fetch('/console/api/bans').then((r) => r.status),
      otherExt: await post('extensions/1000', { enabled: false }),
      addOther: await post('extensions', { number: '1150', opd: 'setda', name: 'x' }),
      otherCdr: await fetch('/console/api/cdr?opd=setda').then((r) => r.status),
      noCsrf: await fetch('/console/api/extensions/2300', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"name":"x"}' }).then((r) => r.status),
    };
  });
  check(answers.bans === 403, `bans: ${answers.bans}`);
  check(answers.otherExt === 404, `another OPD's extension: ${answers.otherExt}`);
  check(answers.addOther === 403, `adding to another OPD: ${answers.addOther}`);
  check(answers.otherCdr === 403, `another OPD's records: ${answers.otherCdr}`);
  check(answers.noCsrf === 403, `a change without the CSRF token: ${answers.noCsrf}`);
  await tid('logout').click();
  await tid('login-user').waitFor({ state: 'visible' });
});

await scenario('lockout', async () => {
  if (await tid('logout').isVisible()) { await tid('logout').click(); }
  await tid('login-user').waitFor({ state: 'visible' });
  await login('nobody-here', 'wrong-password-0');
  const unknown = await loginError();
  await login(lockUser, 'wrong-password-1');
  const wrong = await loginError();
  check(unknown.key === 'bad-credentials' && wrong.key === 'bad-credentials' && unknown.text === wrong.text,
    `a wrong name and a wrong password answer differently: ${JSON.stringify([unknown, wrong])}`);
  let last = wrong;
  for (let i = 2; i <= 5; i++) {
    await page.evaluate(() => { document.querySelector('[data-testid="login-error"]').hidden = true; });
    await login(lockUser, `wrong-password-${i}`);
    last = await loginError();
  }
  check(last.key === 'locked', `after 5 wrong passwords: ${JSON.stringify(last)}`);
  await page.evaluate(() => { document.querySelector('[data-testid="login-error"]').hidden = true; });
  await login(lockUser, lockPw);
  const right = await loginError();
  check(right.key === 'locked', `the right password while locked: ${JSON.stringify(right)}`);
  await shot('console-locked.png');
});

await ctx.closeAll();
console.log(`${results.length} passed, ${failed} failed`);
console.log(`RESULT ${failed ? 'FAIL' : 'PASS'}`);
process.exit(failed ? 1 : 0);
