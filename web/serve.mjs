#!/usr/bin/env node
// Development server for the /phone page: no SIP, no switch.
//
//   node web/serve.mjs [--port N] [--dist DIR] [--no-build]
//
// Listens on 127.0.0.1 (ephemeral port unless --port), builds web/dist first (unless
// --no-build), and serves:
//   GET /phone, /phone/            web/dist/phone.html
//   GET /phone/phone.js, .css      web/dist/phone.{js,css}
//   GET /phone/api/config          {"domain": "127.0.0.1", "ws_url": ""}  (canned)
//   GET /phone/api/directory       canned OPDs; Basic auth optional here (a malformed header -> 401)
// /ws is not served, so a login attempt shows the "switch unreachable" sentence. Open
// /phone?demo=1 to see the main screen without SIP.
//
// createDevServer() is also used by tests/browser/mock-switch.mjs, which adds a /ws.
import http from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';

const HERE = dirname(fileURLToPath(import.meta.url));

export const DEMO_DIRECTORY = {
  opds: [
    {
      code: 'dinkes', name: 'Dinas Kesehatan',
      extensions: [
        { ext: '1001', name: 'Budi Santoso', online: true },
        { ext: '1002', name: 'Siti Rahayu', online: false },
        { ext: '1003', name: 'Ruang Rapat Dinkes', online: true },
      ],
    },
    {
      code: 'disdik', name: 'Dinas Pendidikan',
      extensions: [
        { ext: '2001', name: 'Agus Wibowo', online: true },
        { ext: '2002', name: 'Sari Lestari', online: true },
      ],
    },
    {
      code: 'bpbd', name: 'Badan Penanggulangan Bencana Daerah',
      extensions: [
        { ext: '3001', name: 'Posko Siaga', online: true },
        { ext: '3002', name: 'Kepala Pelaksana', online: false },
      ],
    },
  ],
};

const TYPES = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

// options: dist (dir), config (object), directory (object or function(authUser, authPass) -> object|null)
export function createDevServer(options = {}) {
  const dist = options.dist || join(HERE, 'dist');
  const config = options.config || { domain: '127.0.0.1', ws_url: '' };
  const directory = options.directory || (() => DEMO_DIRECTORY);
  const file = (name) => readFileSync(join(dist, name));
  const send = (res, code, type, body, extra) => {
    const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
    res.writeHead(code, Object.assign({ 'Content-Type': type, 'Content-Length': b.length, 'Cache-Control': 'no-store' }, extra || {}));
    res.end(b);
  };
  return http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const p = url.pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
    try {
      if (p === '/phone' || p === '/phone/') return send(res, 200, TYPES.html, file('phone.html'));
      if (p === '/phone/phone.js') return send(res, 200, TYPES.js, file('phone.js'));
      if (p === '/phone/phone.css') return send(res, 200, TYPES.css, file('phone.css'));
      if (p === '/phone/api/config') {
        const c = typeof config === 'function' ? config(req) : config;
        return send(res, 200, 'application/json', JSON.stringify(c));
      }
      if (p === '/phone/api/directory') {
        const auth = req.headers.authorization;
        let user = null, pass = null;
        if (auth) {
          const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(auth);
          const dec = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
          const i = dec.indexOf(':');
          if (i < 0) return send(res, 401, 'text/plain', 'unauthorized\n', { 'WWW-Authenticate': 'Basic realm="tambun"' });
          user = dec.slice(0, i); pass = dec.slice(i + 1);
        }
        const d = directory(user, pass);
        if (!d) return send(res, 401, 'text/plain', 'unauthorized\n', { 'WWW-Authenticate': 'Basic realm="tambun"' });
        return send(res, 200, 'application/json', JSON.stringify(d));
      }
      if (p === '/' ) return send(res, 302, 'text/plain', 'see /phone\n', { Location: '/phone' });
      if (p === '/favicon.ico') return send(res, 204, 'image/x-icon', Buffer.alloc(0));
    } catch (e) {
      return send(res, 500, 'text/plain', 'dev server: ' + e.message + '\n');
    }
    return send(res, 404, 'text/plain', 'not found\n');
  });
}

export function listen(server, port = 0) {
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok(`http://127.0.0.1:${server.address().port}`));
  });
}

async function main() {
  const args = process.argv.slice(2);
  let port = 0, dist = join(HERE, 'dist'), build = true;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') port = Number(args[++i]);
    else if (args[i] === '--dist') dist = resolve(args[++i]);
    else if (args[i] === '--no-build') build = false;
    else { console.error(`unknown argument ${args[i]}`); process.exit(2); }
  }
  if (build) execFileSync(process.execPath, [join(HERE, 'build.mjs'), dist], { stdio: 'inherit' });
  if (!existsSync(join(dist, 'phone.js'))) { console.error(`no build in ${dist}`); process.exit(1); }
  const base = await listen(createDevServer({ dist }), port);
  console.log(`dev server (no SIP): ${base}/phone   demo: ${base}/phone?demo=1   (Ctrl-C to stop)`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
