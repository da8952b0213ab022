#!/usr/bin/env node
// A stand-in for the switch, for developing and testing the /phone page without the Rust
// binary: web/serve.mjs's HTTP handler plus a SIP-over-WebSocket (RFC 7118) registrar and
// stateless relay on /ws. Loopback only, plain http/ws.
//
//   node tests/browser/mock-switch.mjs [--port N]        (prints the base URL)
//
// It is NOT a model of the switch: no media relay (browsers send media to each other
// directly, both on 127.0.0.1 with ?ice=rewrite), no dialplan, no Record-Route, no proxy
// auth on INVITE, no transactions. What it does:
//   - accounts 1000..1009, password "pw" + number (as the peers harness)
//   - REGISTER: digest (MD5, qop=auth) -> 200 with the Contact echoed; a wrong password or
//     an unknown extension -> 403 after the challenge
//   - INVITE to a registered account: relayed (own Via on top, R-URI = registered contact);
//     to an account not registered: 480; to another number: 404
//   - numbers 486, 603, 404, 480 and 500 answer with that status (to test the sentences)
//   - in-dialog requests (R-URI host = a connection's random *.invalid host) are relayed to
//     that connection; responses go back by the Via branch
//   - GET /phone/api/config -> {"domain":"127.0.0.1","ws_url":""}; GET /phone/api/directory
//     needs Basic auth with an account (401 otherwise), "online" = registered
import { createHash, randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevServer, listen } from '../../web/serve.mjs';

const md5 = (s) => createHash('md5').update(s).digest('hex');
const REALM = 'tambun';
const MY_HOST = 'mock-switch.invalid';

export function accounts() {
  const a = {};
  for (let n = 1000; n <= 1009; n++) a[String(n)] = 'pw' + n;
  return a;
}

/* ------------------------------------------------------------------ WebSocket (server side, RFC 6455) */

function wsAccept(req, socket, onMessage, onClose) {
  const key = req.headers['sec-websocket-key'];
  const protos = String(req.headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim());
  if (!key || !protos.includes('sip')) {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    return null;
  }
  const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: sip\r\n\r\n`);
  socket.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let frag = [];
  const conn = {
    id: randomBytes(4).toString('hex'),
    open: true,
    send(text) {
      if (!conn.open) return;
      const p = Buffer.from(text);
      let h;
      if (p.length < 126) h = Buffer.from([0x81, p.length]);
      else if (p.length < 65536) { h = Buffer.alloc(4); h[0] = 0x81; h[1] = 126; h.writeUInt16BE(p.length, 2); }
      else { h = Buffer.alloc(10); h[0] = 0x81; h[1] = 127; h.writeBigUInt64BE(BigInt(p.length), 2); }
      socket.write(Buffer.concat([h, p]));
    },
    close() { if (conn.open) { conn.open = false; try { socket.end(Buffer.from([0x88, 0])); } catch (e) { /* gone */ } } },
  };
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const fin = (buf[0] & 0x80) !== 0;
      const op = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      const need = off + (masked ? 4 : 0) + len;
      if (buf.length < need) return;
      let payload = buf.subarray(off + (masked ? 4 : 0), need);
      if (masked) {
        const m = buf.subarray(off, off + 4);
        payload = Buffer.from(payload.map((b, i) => b ^ m[i & 3]));
      }
      buf = buf.subarray(need);
      if (op === 0x8) { conn.close(); return; }
      if (op === 0x9) { socket.write(Buffer.concat([Buffer.from([0x8a, payload.length]), payload])); continue; }
      if (op === 0xa) continue;
      frag.push(payload);
      if (fin) { const msg = Buffer.concat(frag).toString('utf8'); frag = []; onMessage(conn, msg); }
    }
  });
  const gone = () => { if (conn.open) conn.open = false; onClose(conn); };
  socket.on('close', gone);
  socket.on('error', () => {});
  return conn;
}

/* ------------------------------------------------------------------ SIP message handling */

const COMPACT = { v: 'via', f: 'from', t: 'to', i: 'call-id', m: 'contact', l: 'content-length', c: 'content-type', k: 'supported' };

function parse(text) {
  const i = text.indexOf('\r\n\r\n');
  const head = i < 0 ? text : text.slice(0, i);
  const body = i < 0 ? '' : text.slice(i + 4);
  const lines = head.split('\r\n');
  const first = lines.shift();
  const headers = [];
  for (const l of lines) {
    if (/^[ \t]/.test(l) && headers.length) { headers[headers.length - 1][1] += ' ' + l.trim(); continue; }
    const c = l.indexOf(':');
    if (c < 0) continue;
    let name = l.slice(0, c).trim();
    if (COMPACT[name.toLowerCase()]) name = COMPACT[name.toLowerCase()];
    headers.push([name, l.slice(c + 1).trim()]);
  }
  const m = /^([A-Z]+) (\S+) SIP\/2\.0$/.exec(first);
  const r = /^SIP\/2\.0 (\d{3}) (.*)$/.exec(first);
  return {
    request: !!m, method: m ? m[1] : null, uri: m ? m[2] : null,
    status: r ? Number(r[1]) : null, reason: r ? r[2] : null,
    headers, body,
    get(name) { const h = headers.find(([n]) => n.toLowerCase() === name.toLowerCase()); return h ? h[1] : null; },
    all(name) { return headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v); },
  };
}

function serialize(msg) {
  const first = msg.request ? `${msg.method} ${msg.uri} SIP/2.0` : `SIP/2.0 ${msg.status} ${msg.reason}`;
  return [first, ...msg.headers.map(([n, v]) => `${n}: ${v}`)].join('\r\n') + '\r\n\r\n' + msg.body;
}

// Via values, top first (a header may carry several, comma-separated)
function vias(msg) {
  const out = [];
  for (const v of msg.all('via')) for (const p of v.split(/,(?=\s*SIP\/)/)) out.push(p.trim());
  return out;
}
function setVias(msg, list) {
  const rest = msg.headers.filter(([n]) => n.toLowerCase() !== 'via');
  msg.headers = list.map((v) => ['Via', v]).concat(rest);
}
const viaHost = (v) => { const m = /^SIP\/2\.0\/\S+\s+([^;:\s]+)/i.exec(v); return m ? m[1].toLowerCase() : null; };
const viaBranch = (v) => { const m = /;branch=([^;\s,]+)/i.exec(v); return m ? m[1] : null; };
const uriUser = (u) => { const m = /^sips?:([^@;>]+)@/i.exec(u); return m ? decodeURIComponent(m[1]) : null; };
const uriHost = (u) => { const m = /^sips?:(?:[^@;>]+@)?([^;:>]+)/i.exec(u); return m ? m[1].toLowerCase() : null; };
const angle = (v) => { const m = /<([^>]+)>/.exec(v); return m ? m[1] : v.split(';')[0].trim(); };

function reply(conn, req, status, reason, extra = [], body = '') {
  const h = [];
  for (const v of vias(req)) h.push(['Via', v]);
  let to = req.get('to') || '';
  if (status > 100 && !/;tag=/i.test(to)) to += ';tag=' + md5(req.get('call-id') + (viaBranch(vias(req)[0]) || '')).slice(0, 10);
  h.push(['From', req.get('from') || ''], ['To', to], ['Call-ID', req.get('call-id') || ''], ['CSeq', req.get('cseq') || '']);
  for (const e of extra) h.push(e);
  h.push(['Server', 'tambun-mock-switch'], ['Content-Length', String(Buffer.byteLength(body))]);
  conn.send(serialize({ request: false, status, reason, headers: h, body }));
}

function parseDigest(v) {
  const o = {};
  const re = /(\w+)=(?:"([^"]*)"|([^\s,]+))/g;
  let m;
  while ((m = re.exec(v))) o[m[1].toLowerCase()] = m[2] !== undefined ? m[2] : m[3];
  return o;
}

export function createMockSwitch({ accts = accounts(), log = () => {} } = {}) {
  const regs = new Map();     // ext -> { conn, contact }
  const hosts = new Map();    // *.invalid host of a connection -> conn
  const branches = new Map(); // our Via branch -> origin conn
  const nonces = new Set();
  const stats = { registers: 0, invites: 0, relayed: 0 };

  const forward = (from, to, req, uri) => {
    const top = vias(req)[0] || '';
    const ours = 'z9hG4bK' + md5((viaBranch(top) || '') + (req.method === 'CANCEL' || req.method === 'ACK' ? '' : req.method)).slice(0, 16);
    // CANCEL and the ACK of a failure must carry the branch of the INVITE they belong to
    const branch = (req.method === 'CANCEL' || req.method === 'ACK')
      ? 'z9hG4bK' + md5((viaBranch(top) || '') + 'INVITE').slice(0, 16)
      : ours;
    branches.set(branch, from);
    if (branches.size > 5000) branches.delete(branches.keys().next().value);
    setVias(req, [`SIP/2.0/WS ${MY_HOST};branch=${branch}`, ...vias(req)]);
    if (uri) req.uri = uri;
    stats.relayed++;
    to.send(serialize(req));
  };

  function onRequest(conn, req) {
    const top = vias(req)[0];
    const h = top && viaHost(top);
    if (h && h.endsWith('.invalid')) { hosts.set(h, conn); conn.hosts = (conn.hosts || new Set()).add(h); }
    const toTag = /;tag=/i.test(req.get('to') || '');

    if (req.method === 'REGISTER') {
      stats.registers++;
      const user = uriUser(req.get('to') ? angle(req.get('to')) : '') || '';
      const auth = req.get('authorization');
      if (!auth) {
        const nonce = randomBytes(12).toString('hex');
        nonces.add(nonce);
        return reply(conn, req, 401, 'Unauthorized', [['WWW-Authenticate', `Digest realm="${REALM}", nonce="${nonce}", qop="auth", algorithm=MD5`]]);
      }
      const d = parseDigest(auth);
      const pw = accts[d.username];
      const ha1 = md5(`${d.username}:${REALM}:${pw}`);
      const ha2 = md5(`REGISTER:${d.uri}`);
      const want = d.qop ? md5(`${ha1}:${d.nonce}:${d.nc}:${d.cnonce}:${d.qop}:${ha2}`) : md5(`${ha1}:${d.nonce}:${ha2}`);
      if (pw === undefined || d.username !== user || !nonces.has(d.nonce) || d.response !== want) {
        log(`REGISTER ${user}: 403`);
        return reply(conn, req, 403, 'Forbidden');
      }
      const contactH = req.get('contact') || '';
      const exp = Number((/;expires=(\d+)/i.exec(contactH) || [])[1] ?? req.get('expires') ?? 600);
      if (exp === 0 || contactH === '*') {
        regs.delete(user);
        log(`REGISTER ${user}: unregistered`);
        return reply(conn, req, 200, 'OK');
      }
      regs.set(user, { conn, contact: angle(contactH) });
      log(`REGISTER ${user}: 200`);
      return reply(conn, req, 200, 'OK', [['Contact', contactH.replace(/;expires=\d+/i, '') + ';expires=' + Math.min(exp, 600)], ['Expires', String(Math.min(exp, 600))]]);
    }

    if (req.method === 'OPTIONS' && !toTag && uriHost(req.uri) !== null && !uriHost(req.uri).endsWith('.invalid')) {
      return reply(conn, req, 200, 'OK', [['Allow', 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE']]);
    }

    // in-dialog (or anything addressed to a connection's own contact host)
    const rh = uriHost(req.uri);
    if (rh && rh.endsWith('.invalid')) {
      const dst = hosts.get(rh);
      if (!dst || !dst.open) { if (req.method !== 'ACK') reply(conn, req, 481, 'Call/Transaction Does Not Exist'); return; }
      return forward(conn, dst, req, null);
    }

    if (req.method === 'INVITE' || req.method === 'CANCEL' || req.method === 'ACK') {
      const target = uriUser(req.uri) || '';
      if (req.method === 'INVITE') {
        stats.invites++;
        reply(conn, req, 100, 'Trying');
        const fixed = { 486: 'Busy Here', 603: 'Decline', 404: 'Not Found', 480: 'Temporarily Unavailable', 500: 'Server Internal Error' };
        if (fixed[target]) return reply(conn, req, Number(target), fixed[target]);
        if (accts[target] === undefined) return reply(conn, req, 404, 'Not Found');
      }
      const r = regs.get(target);
      if (!r || !r.conn.open) {
        if (req.method === 'INVITE') return reply(conn, req, 480, 'Temporarily Unavailable');
        if (req.method === 'CANCEL') return reply(conn, req, 200, 'OK');
        return;   // ACK of a final response we sent ourselves
      }
      log(`${req.method} ${target}`);
      return forward(conn, r.conn, req, r.contact);
    }
    if (req.method !== 'ACK') reply(conn, req, 405, 'Method Not Allowed');
  }

  function onResponse(conn, res) {
    const v = vias(res);
    if (!v.length || viaHost(v[0]) !== MY_HOST) return;
    const dst = branches.get(viaBranch(v[0]));
    if (!dst || !dst.open) return;
    setVias(res, v.slice(1));
    dst.send(serialize(res));
  }

  return {
    stats, regs,
    handleUpgrade(req, socket) {
      if (new URL(req.url, 'http://x').pathname !== '/ws') { socket.destroy(); return; }
      wsAccept(req, socket, (conn, text) => {
        let msg;
        try { msg = parse(text); } catch (e) { return; }
        if (msg.request) onRequest(conn, msg); else if (msg.status) onResponse(conn, msg);
      }, (conn) => {
        for (const [ext, r] of regs) if (r.conn === conn) regs.delete(ext);
        for (const h of conn.hosts || []) if (hosts.get(h) === conn) hosts.delete(h);
      });
    },
    directory(user, pass) {
      if (user === null || accts[user] === undefined || accts[user] !== pass) return null;
      const ext = (n, name) => ({ ext: n, name, online: regs.has(n) });
      return {
        opds: [
          { code: 'dinkes', name: 'Dinas Kesehatan', extensions: [ext('1000', 'Budi'), ext('1001', 'Siti'), ext('1002', 'Agus')] },
          { code: 'disdik', name: 'Dinas Pendidikan', extensions: [ext('1003', 'Sari'), ext('1004', 'Rina')] },
        ],
      };
    },
  };
}

// HTTP (page + API) and /ws on one 127.0.0.1 port. Resolves { base, server, mock, close() }.
export async function startMockSwitch({ port = 0, dist, log } = {}) {
  const mock = createMockSwitch({ log });
  const server = createDevServer({ dist, directory: (u, p) => mock.directory(u, p) });
  server.on('upgrade', (req, socket) => mock.handleUpgrade(req, socket));
  const base = await listen(server, port);
  return {
    base, server, mock,
    close: () => new Promise((ok) => { server.closeAllConnections && server.closeAllConnections(); server.close(() => ok()); setTimeout(ok, 1000); }),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const s = await startMockSwitch({ port: i > 0 ? Number(process.argv[i + 1]) : 0, log: (m) => console.error(m) });
  console.log(`mock switch: ${s.base}/phone  (accounts 1000..1009, password pwN; Ctrl-C to stop)`);
}
