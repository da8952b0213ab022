// The operator console served at /console: one page, hash routes (#dashboard, #extensions,
// #cdr, #usage, #bans), the JSON API under /console/api/ (a session cookie; every POST sends
// the session's CSRF token in X-CSRF-Token). All text is in TEXT.id / TEXT.en; the choice is
// kept in localStorage 'tambun.console.lang'. No data is put into the page as HTML.
import {
  Chart, BarController, BarElement, CategoryScale, LinearScale, DoughnutController, ArcElement,
  Tooltip, Legend,
} from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, DoughnutController, ArcElement, Tooltip, Legend);

const TEXT = {
  id: {
    brand: 'Konsol Operator Tambun', logout: 'Keluar', login_title: 'Masuk ke konsol',
    login_user: 'Nama operator', login_password: 'Kata sandi', login_submit: 'Masuk',
    bad_credentials: 'Nama operator atau kata sandi salah.',
    locked: 'Akun ini dikunci karena terlalu banyak kata sandi salah. Coba lagi setelah {until}.',
    nav_dashboard: 'Dasbor', nav_extensions: 'Ekstensi', nav_cdr: 'Catatan panggilan',
    nav_usage: 'Pemakaian', nav_bans: 'Blokir', warnings: 'Peringatan',
    warnings_none: 'Tidak ada peringatan.', regs_per_opd: 'Pendaftaran per OPD',
    calls_now: 'Panggilan berlangsung', no_calls: 'Tidak ada panggilan saat ini.',
    col_opd: 'OPD', col_name: 'Nama', col_extensions: 'Ekstensi', col_registered: 'Terdaftar',
    col_caller: 'Pemanggil', col_callee: 'Tujuan', col_state: 'Status', col_duration: 'Durasi',
    col_number: 'Nomor', col_status: 'Status', col_actions: 'Tindakan', col_extension: 'Ekstensi',
    col_start: 'Mulai (WIB)', col_dialled: 'Nomor dituju', col_disposition: 'Hasil',
    col_calls: 'Panggilan', col_minutes: 'Menit',
    ext_pw_optional: 'Kata sandi (kosong: dibuat)', ext_add: 'Tambah',
    ext_import: 'Impor CSV (number,opd,name[,password])', ext_import_submit: 'Impor',
    ext_added: 'Ekstensi {number} ditambahkan.', ext_secret: 'Kata sandi ekstensi {number}: {password} (hanya ditampilkan sekali)',
    enabled: 'aktif', disabled: 'nonaktif', online: 'terdaftar', offline: 'tidak terdaftar',
    rename: 'Ubah nama', disable: 'Nonaktifkan', enable: 'Aktifkan', reset_pw: 'Atur ulang kata sandi',
    rename_prompt: 'Nama baru untuk {number}:', reset_confirm: 'Buat kata sandi baru untuk {number}? Telepon harus diatur ulang.',
    import_done: '{n} ekstensi diimpor.', import_bad: '{n} baris ditolak:', import_line: 'baris {line}: {reason}',
    import_passwords: 'Kata sandi yang dibuat (hanya ditampilkan sekali):', importing: 'Mengimpor…',
    all_opds: 'Semua OPD', all_dispositions: 'Semua hasil', from: 'Dari', to: 'Sampai', search: 'Cari',
    export_csv: 'Ekspor CSV', cdr_count: '{total} catatan; {shown} ditampilkan (terbaru dulu).',
    usage_title: 'Pemakaian per OPD', show: 'Tampilkan', print: 'Cetak laporan bulanan',
    minutes_per_day: 'Menit per hari', minutes_per_class: 'Menit per jenis nomor',
    top_callers: 'Pemanggil teratas', per_opd: 'Per OPD', minutes: 'Menit',
    budget_used: 'Anggaran bulanan terpakai', col_budget_used: 'Terpakai', col_budget_limit: 'Batas',
    col_budget_ratio: '%', col_budget_state: 'Status', no_budgets: 'Tidak ada anggaran untuk bulan ini.',
    unit_minutes: 'menit', unit_rupiah: 'rupiah',
    budget_ok: 'aman', budget_warning: 'hampir habis', budget_exhausted: 'habis',
    usage_totals: '{month}: {calls} panggilan, {answered} dijawab, {minutes} menit.',
    ban_address: 'Alamat IP', ban_duration: 'Lama (30m, 12h, 7d; kosong: tetap)', ban_reason: 'Alasan',
    ban_add: 'Blokir', ban_remove: 'Cabut', since: 'Sejak', until: 'Sampai', forever: 'sampai dicabut',
    no_bans: 'Tidak ada blokir.', error: 'Gagal: {message}', session_over: 'Sesi berakhir; silakan masuk lagi.',
    class_internal: 'internal', class_emergency: 'darurat', class_local: 'lokal', class_national: 'SLJJ',
    class_mobile: 'seluler', class_international: 'internasional', class_conference: 'konferensi', class_outside: 'luar',
    role_admin: 'admin', role_opd: 'operator OPD {opd}',
    trunks: 'Trunk (operator telekomunikasi)', trunk_target: 'Alamat', trunk_registration: 'Registrasi',
    trunk_health: 'Kondisi', trunk_rtt: 'Ping', healthy: 'sehat', unhealthy: 'bermasalah', no_trunks: 'Tidak ada trunk.',
    'reg_not-required': 'tidak perlu', reg_registering: 'mendaftar…', reg_registered: 'terdaftar', reg_failed: 'gagal',
    'warning_trunk-down': 'Trunk bermasalah: {message}',
    'warning_budget-warning': 'Anggaran bulanan hampir habis: {message}',
    'warning_budget-exhausted': 'Anggaran bulanan habis, panggilan keluar ditolak: {message}',
  },
  en: {
    brand: 'Tambun Operator Console', logout: 'Log out', login_title: 'Log in to the console',
    login_user: 'Operator name', login_password: 'Password', login_submit: 'Log in',
    bad_credentials: 'The operator name or the password is wrong.',
    locked: 'This account is locked after too many wrong passwords. Try again after {until}.',
    nav_dashboard: 'Dashboard', nav_extensions: 'Extensions', nav_cdr: 'Call records',
    nav_usage: 'Usage', nav_bans: 'Bans', warnings: 'Warnings',
    warnings_none: 'No warnings.', regs_per_opd: 'Registrations per OPD',
    calls_now: 'Calls in progress', no_calls: 'No calls right now.',
    col_opd: 'OPD', col_name: 'Name', col_extensions: 'Extensions', col_registered: 'Registered',
    col_caller: 'Caller', col_callee: 'Callee', col_state: 'State', col_duration: 'Duration',
    col_number: 'Number', col_status: 'Status', col_actions: 'Actions', col_extension: 'Extension',
    col_start: 'Start (WIB)', col_dialled: 'Dialled', col_disposition: 'Result',
    col_calls: 'Calls', col_minutes: 'Minutes',
    ext_pw_optional: 'Password (empty: generated)', ext_add: 'Add',
    ext_import: 'Import CSV (number,opd,name[,password])', ext_import_submit: 'Import',
    ext_added: 'Extension {number} added.', ext_secret: 'Password of extension {number}: {password} (shown only once)',
    enabled: 'enabled', disabled: 'disabled', online: 'registered', offline: 'not registered',
    rename: 'Rename', disable: 'Disable', enable: 'Enable', reset_pw: 'Reset password',
    rename_prompt: 'New name for {number}:', reset_confirm: 'Make a new password for {number}? The phone must be set up again.',
    import_done: '{n} extension(s) imported.', import_bad: '{n} line(s) refused:', import_line: 'line {line}: {reason}',
    import_passwords: 'Generated passwords (shown only once):', importing: 'Importing…',
    all_opds: 'All OPDs', all_dispositions: 'All results', from: 'From', to: 'To', search: 'Search',
    export_csv: 'Export CSV', cdr_count: '{total} record(s); {shown} shown (newest first).',
    usage_title: 'Usage per OPD', show: 'Show', print: 'Print monthly report',
    minutes_per_day: 'Minutes per day', minutes_per_class: 'Minutes per number class',
    top_callers: 'Top callers', per_opd: 'Per OPD', minutes: 'Minutes',
    budget_used: 'Monthly budget used', col_budget_used: 'Used', col_budget_limit: 'Limit',
    col_budget_ratio: '%', col_budget_state: 'State', no_budgets: 'No budget for this month.',
    unit_minutes: 'minutes', unit_rupiah: 'rupiah',
    budget_ok: 'ok', budget_warning: 'nearly used up', budget_exhausted: 'used up',
    usage_totals: '{month}: {calls} call(s), {answered} answered, {minutes} minutes.',
    ban_address: 'IP address', ban_duration: 'Duration (30m, 12h, 7d; empty: until removed)', ban_reason: 'Reason',
    ban_add: 'Ban', ban_remove: 'Lift', since: 'Since', until: 'Until', forever: 'until removed',
    no_bans: 'No bans.', error: 'Failed: {message}', session_over: 'The session ended; please log in again.',
    class_internal: 'internal', class_emergency: 'emergency', class_local: 'local', class_national: 'national',
    class_mobile: 'mobile', class_international: 'international', class_conference: 'conference', class_outside: 'outside',
    role_admin: 'admin', role_opd: 'OPD operator {opd}',
    trunks: 'Trunk (carriers)', trunk_target: 'Address', trunk_registration: 'Registration',
    trunk_health: 'Health', trunk_rtt: 'Ping', healthy: 'healthy', unhealthy: 'failing', no_trunks: 'No trunk.',
    'reg_not-required': 'not required', reg_registering: 'registering…', reg_registered: 'registered', reg_failed: 'failed',
    'warning_trunk-down': 'Trunk problem: {message}',
    'warning_budget-warning': 'Monthly budget nearly used up: {message}',
    'warning_budget-exhausted': 'Monthly budget used up, outside calls refused: {message}',
  },
};
const DISPOSITIONS = ['answered', 'busy', 'no-answer', 'cancelled', 'rejected', 'failed', 'expired', 'media-timeout', 'blocked', 'interrupted'];
const PAGES = ['dashboard', 'extensions', 'cdr', 'usage', 'bans'];

const state = { lang: 'id', me: null, opds: [], charts: [], page: null, usage: null };
window.tambunConsole = state;

const $ = (sel, root = document) => root.querySelector(sel);
const tid = (id) => $(`[data-testid="${id}"]`);
function t(key, vars = {}) {
  const s = (TEXT[state.lang] && TEXT[state.lang][key]) || TEXT.id[key] || key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined || vars[k] === null ? '' : String(vars[k])));
}
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
function fill(tbody, rows) { tbody.replaceChildren(...rows); }
function duration(secs) { const s = Math.max(0, secs | 0); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`; }

function applyLang() {
  document.documentElement.lang = state.lang;
  document.title = t('brand');
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll('[data-i18n-ph]')) e.placeholder = t(e.dataset.i18nPh);
  tid('lang-toggle').value = state.lang;
  showWho();
  fillSelects();
}

class ApiError extends Error {
  constructor(status, body) { super((body && body.message) || `HTTP ${status}`); this.status = status; this.body = body || {}; }
}
async function api(path, { method = 'GET', json, body, contentType } = {}) {
  const headers = {};
  if (method !== 'GET') {
    if (state.me) headers['X-CSRF-Token'] = state.me.csrf;
    if (json !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(json); }
    else if (contentType) headers['Content-Type'] = contentType;
  }
  const r = await fetch(`/console/api/${path}`, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    if (r.status === 401 && path !== 'login' && state.me) { state.me = null; showLogin(t('session_over')); }
    throw new ApiError(r.status, data);
  }
  return data;
}
function pageError(e) {
  const p = tid('page-error');
  if (!e) { p.hidden = true; p.textContent = ''; return; }
  p.textContent = t('error', { message: e.message });
  p.hidden = false;
}

// ---- login ----
function showLogin(message) {
  $('#app').hidden = true;
  $('#login').hidden = false;
  tid('logout').hidden = true;
  const err = tid('login-error');
  err.hidden = !message;
  err.textContent = message || '';
  showWho();
  tid('login-user').focus();
}
function showWho() {
  const w = tid('who');
  if (!state.me) { w.textContent = ''; return; }
  const role = state.me.role === 'admin' ? t('role_admin') : t('role_opd', { opd: state.me.opd });
  w.textContent = `${state.me.operator} (${role})`;
}
async function onLogin(ev) {
  ev.preventDefault();
  const err = tid('login-error');
  err.hidden = true;
  try {
    state.me = await api('login', { method: 'POST', json: { user: tid('login-user').value, password: tid('login-password').value } });
    tid('login-password').value = '';
    await enterApp();
  } catch (e) {
    let msg = e.message;
    if (e.body && e.body.error === 'bad-credentials') msg = t('bad_credentials');
    if (e.body && e.body.error === 'locked') msg = t('locked', { until: `${new Date(e.body.locked_until * 1000).toLocaleTimeString(state.lang === 'id' ? 'id-ID' : 'en-GB', { timeZone: 'Asia/Jakarta', hour: '2-digit', minute: '2-digit' })} WIB` });
    err.textContent = msg;
    err.dataset.key = (e.body && e.body.error) || 'error';
    err.hidden = false;
  }
}
async function enterApp() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  tid('logout').hidden = false;
  for (const e of document.querySelectorAll('[data-admin]')) e.hidden = state.me.role !== 'admin';
  showWho();
  try { state.opds = await api('opds'); } catch (e) { state.opds = []; }
  fillSelects();
  if (!location.hash || !PAGES.includes(location.hash.slice(1))) location.hash = '#dashboard';
  else route();
}
async function onLogout() {
  try { await api('logout', { method: 'POST', json: {} }); } catch (e) { /* gone already */ }
  state.me = null;
  // A fresh page: nothing of this operator's searches or results stays for the next one.
  history.replaceState(null, '', '/console');
  location.reload();
}

function fillSelects() {
  const opdOptions = (withAll) => {
    const opts = state.opds.map((o) => el('option', { value: o.code }, `${o.code} — ${o.name}`));
    if (withAll && (!state.me || state.me.role === 'admin')) opts.unshift(el('option', { value: '' }, t('all_opds')));
    return opts;
  };
  for (const [id, all] of [['ext-opd', false], ['cdr-opd', true], ['usage-opd', true]]) {
    const s = tid(id); const v = s.value; s.replaceChildren(...opdOptions(all)); if (v) s.value = v;
  }
  const d = tid('cdr-disposition'); const dv = d.value;
  d.replaceChildren(el('option', { value: '' }, t('all_dispositions')), ...DISPOSITIONS.map((x) => el('option', { value: x }, x)));
  d.value = dv;
}

// ---- pages ----
async function route() {
  if (!state.me) return;
  let page = location.hash.slice(1) || 'dashboard';
  if (!PAGES.includes(page) || (page === 'bans' && state.me.role !== 'admin')) page = 'dashboard';
  state.page = page;
  pageError(null);
  for (const p of PAGES) $(`#page-${p}`).hidden = p !== page;
  for (const a of document.querySelectorAll('nav a')) a.toggleAttribute('aria-current', a.getAttribute('href') === `#${page}`);
  for (const a of document.querySelectorAll('nav a')) if (a.getAttribute('href') === `#${page}`) a.setAttribute('aria-current', 'page');
  try { await LOADERS[page](); } catch (e) { pageError(e); }
  document.body.dataset.page = page;
  document.body.dataset.loaded = `${page}-${Date.now()}`;
}

async function loadDashboard() {
  const d = await api('dashboard');
  fill($('tbody', tid('regs-table')), d.registrations.map((r) => el('tr', { 'data-opd': r.opd },
    el('td', {}, r.opd), el('td', {}, r.name), el('td', {}, r.extensions), el('td', { 'data-testid': `regs-${r.opd}` }, r.registered))));
  const calls = d.calls.map((c) => el('tr', {}, el('td', {}, `${c.caller} (${c.caller_opd || '-'})`),
    el('td', {}, `${c.callee || c.dialled} (${c.callee_opd || '-'})`), el('td', {}, c.state), el('td', {}, duration(c.duration_secs))));
  if (!calls.length) calls.push(el('tr', {}, el('td', { colspan: 4, class: 'muted' }, t('no_calls'))));
  fill($('tbody', tid('calls-table')), calls);
  if (state.me.role === 'admin') {
    const trunks = (d.trunks || []).map((k) => el('tr', { 'data-trunk': k.name, 'data-healthy': String(k.healthy) },
      el('td', {}, k.name), el('td', {}, `${k.target} (${k.transport})`), el('td', {}, t(`reg_${k.registration}`)),
      el('td', {}, k.healthy ? t('healthy') : t('unhealthy')), el('td', {}, k.ping_rtt_ms == null ? '-' : `${k.ping_rtt_ms.toFixed(1)} ms`),
      el('td', {}, k.calls_in_progress)));
    if (!trunks.length) trunks.push(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, t('no_trunks'))));
    fill($('tbody', tid('trunk-table')), trunks);
  }
  const list = tid('warnings-list');
  list.replaceChildren(...d.warnings.map((w) => el('li', { 'data-key': w.key }, t(`warning_${w.key}`) !== `warning_${w.key}` ? t(`warning_${w.key}`, w) : w.message)));
  tid('warnings-empty').hidden = d.warnings.length > 0;
}

async function loadExtensions() {
  const list = await api('extensions');
  fill($('tbody', tid('ext-table')), list.map((x) => el('tr', { 'data-number': x.number, class: x.enabled ? '' : 'disabled' },
    el('td', {}, x.number), el('td', {}, x.opd), el('td', { 'data-testid': `ext-name-${x.number}` }, x.name),
    el('td', { 'data-testid': `ext-status-${x.number}` }, el('span', { class: x.registered ? 'dot on' : 'dot' }),
      `${x.enabled ? t('enabled') : t('disabled')}, ${x.registered ? t('online') : t('offline')}`),
    el('td', { class: 'actions' },
      el('button', { type: 'button', class: 'secondary', 'data-testid': `ext-rename-${x.number}`, onclick: () => renameExt(x) }, t('rename')),
      el('button', { type: 'button', class: 'secondary', 'data-testid': `ext-toggle-${x.number}`, onclick: () => toggleExt(x) }, x.enabled ? t('disable') : t('enable')),
      el('button', { type: 'button', class: 'secondary', 'data-testid': `ext-reset-${x.number}`, onclick: () => resetExt(x) }, t('reset_pw'))))));
}
function showSecret(number, password) {
  const p = tid('ext-secret');
  p.textContent = password ? t('ext_secret', { number, password }) : t('ext_added', { number });
  p.hidden = false;
}
async function onAddExt(ev) {
  ev.preventDefault();
  const f = ev.target;
  try {
    const r = await api('extensions', { method: 'POST', json: { number: f.number.value, opd: f.opd.value, name: f.name.value, password: f.password.value || null } });
    showSecret(r.number, r.password);
    f.number.value = ''; f.name.value = ''; f.password.value = '';
    pageError(null);
    await loadExtensions();
  } catch (e) { pageError(e); }
}
async function renameExt(x) {
  const name = window.prompt(t('rename_prompt', { number: x.number }), x.name);
  if (name === null) return;
  try { await api(`extensions/${encodeURIComponent(x.number)}`, { method: 'POST', json: { name } }); await loadExtensions(); } catch (e) { pageError(e); }
}
async function toggleExt(x) {
  try { await api(`extensions/${encodeURIComponent(x.number)}`, { method: 'POST', json: { enabled: !x.enabled } }); await loadExtensions(); } catch (e) { pageError(e); }
}
async function resetExt(x) {
  if (!window.confirm(t('reset_confirm', { number: x.number }))) return;
  try { const r = await api(`extensions/${encodeURIComponent(x.number)}/password`, { method: 'POST', json: {} }); showSecret(r.number, r.password); } catch (e) { pageError(e); }
}
async function onImport(ev) {
  ev.preventDefault();
  const file = tid('ext-import-file').files[0];
  if (!file) return;
  const report = tid('ext-import-report');
  const progress = tid('ext-import-progress');
  report.hidden = false;
  report.dataset.state = 'running';
  report.replaceChildren(el('p', {}, t('importing')));
  progress.hidden = false;
  progress.removeAttribute('value');
  try {
    const text = await file.text();
    // The answer is NDJSON: {checked,total}, {progress,total}…, then {report} or {error}.
    const resp = await fetch('/console/api/extensions/import', {
      method: 'POST', body: text, credentials: 'same-origin', cache: 'no-store',
      headers: { 'Content-Type': 'text/csv; charset=utf-8', 'X-CSRF-Token': state.me.csrf },
    });
    if (!resp.ok) {
      let data = null;
      try { data = await resp.json(); } catch (e) { data = null; }
      throw new ApiError(resp.status, data);
    }
    let r = null;
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (msg.total !== undefined) { progress.max = Math.max(1, msg.total); progress.value = msg.progress || 0; }
        if (msg.progress !== undefined) report.dataset.progress = String(msg.progress);
        if (msg.progress !== undefined) report.firstChild.textContent = `${t('importing')} ${msg.progress}/${msg.total}`;
        if (msg.error) throw new Error(msg.error);
        if (msg.report) r = msg.report;
      }
      if (done) break;
    }
    if (!r) throw new Error('no report');
    const parts = [el('p', { 'data-testid': 'ext-import-count', 'data-imported': r.imported }, t('import_done', { n: r.imported }))];
    if (r.bad.length) {
      parts.push(el('p', { 'data-testid': 'ext-import-bad-count', 'data-bad': r.bad.length }, t('import_bad', { n: r.bad.length })));
      parts.push(el('ul', {}, ...r.bad.map((b) => el('li', { 'data-testid': 'ext-import-bad', 'data-line': b.line }, t('import_line', b)))));
    }
    if (r.passwords.length) {
      parts.push(el('p', {}, t('import_passwords')));
      parts.push(el('ul', {}, ...r.passwords.map((p) => el('li', {}, `${p.number}: ${p.password}`))));
    }
    report.replaceChildren(...parts);
    report.dataset.state = 'done';
    await loadExtensions();
  } catch (e) {
    report.replaceChildren(el('p', { class: 'error' }, t('error', { message: e.message })));
    report.dataset.state = 'failed';
  } finally { progress.hidden = true; }
}

function cdrQuery() {
  const f = tid('cdr-form');
  const q = new URLSearchParams();
  for (const k of ['ext', 'opd', 'since', 'until', 'disposition']) if (f[k].value) q.set(k, f[k].value);
  return q.toString();
}
async function loadCdr() {
  const q = cdrQuery();
  tid('cdr-export').href = `/console/api/cdr.csv${q ? `?${q}` : ''}`;
  const r = await api(`cdr${q ? `?${q}` : ''}`);
  tid('cdr-count').textContent = t('cdr_count', { total: r.total, shown: r.rows.length });
  fill($('tbody', tid('cdr-table')), r.rows.map((c) => el('tr', { 'data-id': c.id, 'data-caller': c.caller, 'data-disposition': c.disposition },
    el('td', {}, c.start), el('td', {}, `${c.caller} (${c.caller_opd || '-'})`), el('td', {}, c.dialled),
    el('td', {}, `${c.callee || '-'} (${c.callee_opd || '-'})`), el('td', {}, c.disposition), el('td', {}, duration(c.duration_secs)))));
}

function thisMonth() { const d = new Date(Date.now() + 7 * 3600e3); return d.toISOString().slice(0, 7); }
async function loadUsage() {
  const f = tid('usage-form');
  if (!f.month.value) f.month.value = thisMonth();
  const q = new URLSearchParams({ month: f.month.value });
  if (f.opd.value) q.set('opd', f.opd.value);
  const u = await api(`usage?${q}`);
  state.usage = u;
  tid('usage-heading').textContent = `${u.opd || t('all_opds')} · ${u.month}`;
  tid('usage-totals').textContent = t('usage_totals', { month: u.month, ...u.totals });
  for (const c of state.charts) c.destroy();
  state.charts = [];
  const common = { animation: false, responsive: false, plugins: { legend: { display: false } } };
  state.charts.push(new Chart(tid('usage-chart'), {
    type: 'bar',
    data: { labels: u.per_day.map((d) => d.day.slice(8)), datasets: [{ label: t('minutes'), data: u.per_day.map((d) => d.minutes), backgroundColor: '#0b5cab' }] },
    options: { ...common, scales: { y: { beginAtZero: true } } },
  }));
  state.charts.push(new Chart(tid('usage-class-chart'), {
    type: 'doughnut',
    data: { labels: u.per_class.map((c) => t(`class_${c.class}`)), datasets: [{ data: u.per_class.map((c) => c.minutes), backgroundColor: ['#0b5cab', '#1e8e3e', '#e37400', '#b3261e', '#7b1fa2', '#00838f', '#5d6678', '#c2185b'] }] },
    options: { ...common, plugins: { legend: { display: true, position: 'bottom' } } },
  }));
  tid('usage-chart').dataset.points = String(u.per_day.filter((d) => d.minutes > 0).length);
  fill($('tbody', tid('usage-top')), u.top_callers.map((c) => el('tr', {}, el('td', {}, c.caller), el('td', {}, c.opd || '-'), el('td', {}, c.calls), el('td', {}, c.minutes))));
  fill($('tbody', tid('usage-opds')), u.per_opd.map((c) => el('tr', {}, el('td', {}, c.opd), el('td', {}, c.calls), el('td', {}, c.minutes))));
  const budgets = (u.budgets || []).map((b) => {
    const pct = Math.round(b.ratio * 100);
    const bar = el('span', { class: 'bar' });
    bar.style.width = `${Math.min(pct, 100)}%`; // (CSSOM: the page's CSP refuses style attributes)
    return el('tr', { 'data-opd': b.opd, 'data-state': b.state, 'data-percent': String(pct) },
      el('td', {}, b.opd), el('td', {}, `${b.used} ${t(`unit_${b.unit}`)}`), el('td', {}, `${b.limit} ${t(`unit_${b.unit}`)}`),
      el('td', {}, el('span', { class: 'meter' }, bar), ` ${pct} %`), el('td', {}, t(`budget_${b.state}`)));
  });
  if (!budgets.length) budgets.push(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, t('no_budgets'))));
  fill($('tbody', tid('usage-budget')), budgets);
}

async function loadBans() {
  const list = await api('bans');
  const rows = list.map((b) => el('tr', { 'data-address': b.address }, el('td', {}, b.address), el('td', {}, b.reason), el('td', {}, b.since),
    el('td', {}, b.until || t('forever')),
    el('td', {}, el('button', { type: 'button', class: 'secondary', 'data-testid': `ban-remove-${b.address}`, onclick: () => removeBan(b.address) }, t('ban_remove')))));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, t('no_bans'))));
  fill($('tbody', tid('ban-table')), rows);
}
async function onAddBan(ev) {
  ev.preventDefault();
  const f = ev.target;
  try { await api('bans', { method: 'POST', json: { address: f.address.value, duration: f.duration.value, reason: f.reason.value } }); f.address.value = ''; pageError(null); await loadBans(); } catch (e) { pageError(e); }
}
async function removeBan(address) {
  try { await api('bans/remove', { method: 'POST', json: { address } }); await loadBans(); } catch (e) { pageError(e); }
}

const LOADERS = { dashboard: loadDashboard, extensions: loadExtensions, cdr: loadCdr, usage: loadUsage, bans: loadBans };

async function start() {
  state.lang = localStorage.getItem('tambun.console.lang') === 'en' ? 'en' : 'id';
  applyLang();
  tid('lang-toggle').addEventListener('change', (e) => {
    state.lang = e.target.value === 'en' ? 'en' : 'id';
    localStorage.setItem('tambun.console.lang', state.lang);
    applyLang();
    if (state.me) route();
  });
  tid('login-form').addEventListener('submit', onLogin);
  tid('logout').addEventListener('click', onLogout);
  tid('ext-add-form').addEventListener('submit', onAddExt);
  tid('ext-import-form').addEventListener('submit', onImport);
  tid('cdr-form').addEventListener('submit', (e) => { e.preventDefault(); loadCdr().catch(pageError); });
  tid('usage-form').addEventListener('submit', (e) => { e.preventDefault(); loadUsage().catch(pageError); });
  tid('usage-print').addEventListener('click', () => window.print());
  tid('ban-form').addEventListener('submit', onAddBan);
  window.addEventListener('hashchange', route);
  try {
    state.me = await api('me');
    await enterApp();
  } catch (e) { showLogin(''); }
  state.ready = true;
}
start();
