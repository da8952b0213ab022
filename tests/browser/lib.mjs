// Browser test library for the /phone page: Debian's Chromium, headless, through
// playwright-core from web/node_modules (npm ci --prefix web first).
//
// Loopback only, as the peers harness (peers/webrtc): the page, the WebSocket and all ICE
// candidates are on 127.0.0.0/8 and Chromium does no name resolution at all. Pages are
// opened with ?ice=rewrite so the page rewrites its host candidate to 127.0.0.1 (see
// fixLocalSdp in web/src/phone.js); that needs the --webrtc-ip-handling-policy flag below.
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, writeFileSync, appendFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir as osTmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const WEB = resolve(HERE, '../../web');
const require = createRequire(join(WEB, 'package.json'));

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function loadPlaywright() {
  try {
    return require('playwright-core');
  } catch (e) {
    throw new Error(`playwright-core not found under ${WEB}/node_modules: run \`npm ci --prefix web\``);
  }
}

export function isLoopbackUrl(u) {
  try {
    return /^127\.\d+\.\d+\.\d+$/.test(new URL(u).hostname);
  } catch (e) {
    return false;
  }
}

// The flags of peers/webrtc/browser_call.js (chromiumArgs), unchanged, plus fake video.
export function chromiumArgs({ fakeAudio, fakeVideo } = {}) {
  const a = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--autoplay-policy=no-user-gesture-required', '--no-proxy-server',
    '--disable-domain-reliability', '--disable-client-side-phishing-detection',
    // no name resolution at all: everything the page uses is an IP literal on 127.0.0.0/8
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
    // Chromium may keep only the last --disable-features switch: repeat Playwright's
    // network-related entries and add WebRtcHideLocalIpsWithMdns (no mDNS from WebRTC)
    '--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints,' +
      'NetworkTimeServiceQuerying,AimEnabled,PreconnectToSearch,Translate,' +
      'DestroyProfileOnBrowserClose,AvoidUnnecessaryBeforeUnloadCheckSync,HttpsUpgrades,' +
      'HttpsFirstBalancedModeAutoEnable,PaintHolding,LensOverlay,ThirdPartyStoragePartitioning,' +
      'AvoidCorsURLLoaderRestartOnRedirect',
    // ICE on loopback: sockets bound to 0.0.0.0, one host candidate which the page
    // (?ice=rewrite) turns into 127.0.0.1
    '--webrtc-ip-handling-policy=default_public_and_private_interfaces',
    // the switch serves /phone and /ws over TLS with a self-signed certificate
    '--ignore-certificate-errors',
  ];
  if (fakeAudio) a.push('--use-file-for-fake-audio-capture=' + fakeAudio);
  if (fakeVideo) a.push('--use-file-for-fake-video-capture=' + fakeVideo);
  return a;
}

// A 16-bit mono PCM WAV with a steady tone (for --use-file-for-fake-audio-capture).
export function writeToneWav(file, { hz = 880, rate = 48000, seconds = 10, amplitude = 0.3 } = {}) {
  const n = rate * seconds;
  const b = Buffer.alloc(44 + n * 2);
  b.write('RIFF', 0); b.writeUInt32LE(36 + n * 2, 4); b.write('WAVE', 8);
  b.write('fmt ', 12); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22);
  b.writeUInt32LE(rate, 24); b.writeUInt32LE(rate * 2, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36); b.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * amplitude * 32767), 44 + i * 2);
  writeFileSync(file, b);
  return file;
}

// Launch Chromium. fakeAudio: undefined/'beep' (Chromium's built-in fake device), 'tone'
// (an 880 Hz WAV written into tmpdir) or a WAV path. fakeVideo: undefined (built-in fake
// camera pattern) or a .y4m/.mjpeg path. tmpdir: where the profile, HOME, XDG dirs and
// TMPDIR go (created if missing; a fresh mkdtemp when not given, removed by close()).
// Like peers/webrtc/browser-call.sh, HOME, XDG_* and TMPDIR are redirected there, for
// Chromium (env) and for this process (Playwright writes its artifacts under TMPDIR).
export async function launch({ fakeAudio, fakeVideo, tmpdir, headless = true, chromium = '/usr/bin/chromium', keep = false } = {}) {
  const own = !tmpdir;
  const dir = tmpdir ? resolve(tmpdir) : mkdtempSync(join(osTmpdir(), 'tambun-browser.'));
  const home = join(dir, 'home');
  const env = {
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_CACHE_HOME: join(home, '.cache'),
    XDG_RUNTIME_DIR: join(dir, 'xdg-runtime'),
    TMPDIR: join(dir, 'tmp'),
  };
  for (const d of [env.XDG_CONFIG_HOME, env.XDG_CACHE_HOME, env.TMPDIR]) mkdirSync(d, { recursive: true });
  mkdirSync(env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
  Object.assign(process.env, env);
  let audio = fakeAudio;
  if (audio === 'beep') audio = undefined;
  else if (audio === 'tone') audio = writeToneWav(join(dir, 'tone-880.wav'));
  if (!existsSync(chromium)) throw new Error(`${chromium} missing (apt-get install chromium)`);
  const { chromium: pw } = loadPlaywright();
  const ctx = await pw.launchPersistentContext(join(dir, 'chromium-profile'), {
    executablePath: chromium,
    headless,
    args: chromiumArgs({ fakeAudio: audio, fakeVideo }),
    env: Object.assign({}, process.env, env),
    permissions: ['microphone', 'camera'],
    ignoreHTTPSErrors: true,
    viewport: { width: 1200, height: 860 },
    timeout: 30000,
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
  });
  for (const p of ctx.pages()) await p.close().catch(() => {});
  ctx.tambun = { tmpdir: dir };
  ctx.closeAll = async () => {
    try { await Promise.race([ctx.close(), sleep(5000)]); } catch (e) { /* already closed */ }
    if (own && !keep) rmSync(dir, { recursive: true, force: true });
  };
  return ctx;
}

// Open the phone page. baseUrl: http(s)://127.x.x.x:PORT (refused otherwise). The page
// gets ?ice=rewrite unless ice: 'none'; query: extra parameters (e.g. {demo: '1'}).
// Console output and page errors go to TMPDIR/page-N.log when the context has a tmpdir.
let pageSeq = 0;
export async function openPhone(ctx, baseUrl, { ice = 'rewrite', query = {}, lang } = {}) {
  if (!isLoopbackUrl(baseUrl)) throw new Error(`only 127.0.0.0/8 URLs: ${baseUrl}`);
  const page = await ctx.newPage();
  const dir = ctx.tambun && ctx.tambun.tmpdir;
  if (dir) {
    const logf = join(dir, `page-${++pageSeq}.log`);
    page.on('console', (m) => appendFileSync(logf, `${new Date().toISOString()} ${m.type()} ${m.text()}\n`));
    page.on('pageerror', (e) => appendFileSync(logf, `${new Date().toISOString()} PAGEERROR ${e}\n`));
    page.tambunLog = logf;
  }
  const qs = new URLSearchParams(Object.assign(ice === 'rewrite' ? { ice: 'rewrite' } : {}, query));
  const url = `${baseUrl.replace(/\/+$/, '')}/phone${qs.toString() ? '?' + qs : ''}`;
  await page.goto(url);
  await page.waitForFunction(() => window.tambunPhone && window.tambunPhone.ready, null, { timeout: 10000 });
  if (lang) await page.getByTestId('lang-select').selectOption(lang);
  return page;
}

export const tid = (page, id) => page.getByTestId(id);

export function phoneState(page) {
  return page.evaluate(() => JSON.parse(JSON.stringify(window.tambunPhone.state)));
}

// Log in through the form. Resolves {ok, reg, regCode, error} once the switch answered
// (registered, refused, or unreachable); never throws for a refused login.
export async function login(page, ext, pw, { remember = false, timeout = 15000 } = {}) {
  await tid(page, 'login-ext').fill(String(ext));
  await tid(page, 'login-password').fill(String(pw));
  await tid(page, 'login-remember').setChecked(!!remember);
  await tid(page, 'login-submit').click();
  await page.waitForFunction(() => {
    const s = window.tambunPhone.state;
    return s.loggedIn || (s.reg === 'failed' && s.error) || (s.error && s.reg !== 'connecting');
  }, null, { timeout });
  const s = await phoneState(page);
  return { ok: s.loggedIn && s.reg === 'registered', reg: s.reg, regCode: s.regCode, error: s.error ? s.error.text : null, errorKey: s.error ? s.error.key : null };
}

// Dial a number with the dial pad input; video: true uses the video-call button.
export async function call(page, number, { video = false } = {}) {
  await tid(page, 'dial-input').fill(String(number));
  await tid(page, video ? 'dial-video' : 'dial-call').click();
}

// Wait until call-status matches regex (e.g. /Terhubung|Connected/). Returns the text.
export async function waitStatus(page, regex, { timeout = 15000 } = {}) {
  try {
    await page.waitForFunction(([src, flags]) => {
      const el = document.querySelector('[data-testid="call-status"]');
      return el && new RegExp(src, flags).test(el.textContent);
    }, [regex.source, regex.flags], { timeout, polling: 50 });
  } catch (e) {
    const txt = await tid(page, 'call-status').textContent().catch(() => '?');
    const err = await tid(page, 'error-message').textContent().catch(() => '');
    throw new Error(`call-status never matched ${regex}: now "${txt}"${err ? `, error-message "${err}"` : ''}`);
  }
  return tid(page, 'call-status').textContent();
}

// Wait for the call to be confirmed with a connected PeerConnection (media up).
export async function waitMedia(page, { timeout = 15000 } = {}) {
  await page.waitForFunction(() => {
    const c = window.tambunPhone.state.call;
    return c && (c.status === 'confirmed' && c.pc.connection === 'connected' || c.status === 'ended' || c.status === 'failed');
  }, null, { timeout, polling: 50 });
  const s = await phoneState(page);
  if (s.call.status !== 'confirmed') throw new Error(`call ${s.call.status}: ${s.error ? s.error.text : s.call.cause}`);
  return s.call;
}

// Answer the ringing call (waits for the ring panel). video: answer with the camera.
export async function answer(page, { video = false, timeout = 15000 } = {}) {
  const b = tid(page, video ? 'call-answer-video' : 'call-answer');
  await b.waitFor({ state: 'visible', timeout });
  await b.click();
}

export async function decline(page, { timeout = 15000 } = {}) {
  const b = tid(page, 'call-decline');
  await b.waitFor({ state: 'visible', timeout });
  await b.click();
}

export async function hangup(page) {
  await tid(page, 'call-hangup').click();
}

// getStats() summary of the current call (see stats() in web/src/phone.js).
export function stats(page) {
  return page.evaluate(() => window.tambunPhone.stats());
}

export async function errorText(page) {
  const el = tid(page, 'error-message');
  return (await el.isVisible()) ? (await el.textContent()).trim() : null;
}

export async function historyEntries(page) {
  return page.$$eval('[data-testid="history-entry"]', (els) => els.map((e) => ({
    number: e.dataset.number, direction: e.dataset.direction, result: e.dataset.result, text: e.textContent,
  })));
}

export function fmtStats(s) {
  if (!s) return 'no stats';
  const v = s.video || {};
  return `sent ${s.packetsSent} pkts/${s.bytesSent} B, recv ${s.packetsReceived} pkts/${s.bytesReceived} B, ` +
    `codec ${s.codecSend || '-'} / ${s.codecRecv || '-'}, DTLS ${s.dtlsState}${s.dtlsRole ? ' (' + s.dtlsRole + ')' : ''}` +
    `${s.srtpCipher ? ' ' + s.srtpCipher : ''}, ICE ${s.iceState}, pair ${s.localCandidate} -> ${s.remoteCandidate}` +
    (s.audioLevel != null ? `, rx audioLevel ${s.audioLevel.toFixed(3)}` : '') +
    (v.framesSent || v.framesDecoded ? `, video sent ${v.framesSent || 0} frames ${v.codecSend || ''}, decoded ${v.framesDecoded || 0} ${v.codecRecv || ''}` : '');
}
