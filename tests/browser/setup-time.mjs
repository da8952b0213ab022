#!/usr/bin/env node
// Call setup as a person sees it: click "Panggil" to the first decoded audio from the far end,
// for N calls from the page to an auto-answering phone (a baresip desk phone, or a second
// page that answers at once). Prints each time and p50/p95.
//
//   node tests/browser/setup-time.mjs BASEURL EXT:PW NUMBER [N]
//   node tests/browser/setup-time.mjs BASEURL EXT:PW NUMBER [N] --room-video
//
// With --room-video NUMBER is a conference room: the click is the Rooms view's "Gabung
// dengan video" (camera and the grid), and the time is to the first decoded video frame
// of another participant's camera (inbound-rtp video framesDecoded > 0) and decoded audio.
//
// "First decoded audio": the caller's inbound-rtp audio totalAudioEnergy > 0 (samples were
// decoded and played out), polled every 10 ms with the page's RTCPeerConnection.getStats.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, openPhone, login, tid, sleep } from './lib.mjs';

const args = process.argv.slice(2).filter((a) => a !== '--room-video');
const roomVideo = process.argv.includes('--room-video');
const [base, cred, number, nArg] = args;
if (!base || !cred || !number) {
  console.error('usage: setup-time.mjs BASEURL EXT:PW NUMBER [N]');
  process.exit(2);
}
const n = Number(nArg || 10);
const [ext, pw] = [cred.slice(0, cred.indexOf(':')), cred.slice(cred.indexOf(':') + 1)];
const dir = mkdtempSync(join(tmpdir(), 'tambun-setup.'));
const ctx = await launch({ fakeAudio: 'tone', tmpdir: dir });
const button = roomVideo ? `room-join-video-${number}` : 'dial-call';
const hard = setTimeout(() => { console.error('deadline'); process.exit(1); }, 30000 + n * 15000);
hard.unref();
const times = [];
try {
  const page = await openPhone(ctx, base);
  const r = await login(page, ext, pw);
  if (!r.ok) throw new Error(`login: ${r.error}`);
  for (let i = 0; i < n; i++) {
    if (roomVideo) await tid(page, button).waitFor({ timeout: 10000 });
    else await tid(page, 'dial-input').fill(String(number));
    const ms = await page.evaluate(async ([testid, video]) => {
      const t0 = performance.now();
      document.querySelector(`[data-testid="${testid}"]`).click();
      for (;;) {
        await new Promise((res) => setTimeout(res, 10));
        const pc = window.tambunPhone.peerConnection();
        if (!pc) { if (performance.now() - t0 > 10000) return -1; continue; }
        const report = await pc.getStats();
        let energy = 0;
        let frames = 0;
        report.forEach((x) => {
          if (x.type === 'inbound-rtp' && x.kind === 'audio') energy = x.totalAudioEnergy || 0;
          if (x.type === 'inbound-rtp' && x.kind === 'video') frames += x.framesDecoded || 0;
        });
        if (energy > 0 && (!video || frames > 0)) return performance.now() - t0;
        if (performance.now() - t0 > 10000) return -1;
      }
    }, [button, roomVideo]);
    times.push(ms);
    console.log(`${roomVideo ? 'join' : 'call'} ${i + 1}: ${ms < 0 ? 'no media within 10 s' : ms.toFixed(0) + ' ms'}`);
    await tid(page, 'call-hangup').click().catch(() => {});
    await sleep(roomVideo ? 1500 : 700);
  }
} finally {
  await ctx.closeAll();
  rmSync(dir, { recursive: true, force: true });
}
const ok = times.filter((t) => t >= 0).sort((a, b) => a - b);
const q = (p) => ok[Math.min(ok.length - 1, Math.ceil(p * ok.length) - 1)];
console.log(`setup ${ok.length}/${times.length} calls: p50 ${q(0.5).toFixed(0)} ms, p95 ${q(0.95).toFixed(0)} ms, max ${ok[ok.length - 1].toFixed(0)} ms`);
process.exit(ok.length === times.length ? 0 : 1);
