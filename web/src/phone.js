/*
 * Tambun softphone: the browser phone the switch serves at /phone.
 *
 * One page, no framework. JsSIP 3.13 speaks SIP over a WebSocket to the same origin
 * (wss://HOST/ws, subprotocol "sip"); the SIP domain comes from GET /phone/api/config.
 * All user-facing text is in the two dictionaries TEXT.id and TEXT.en.
 *
 * Query parameters (all optional, for tests and development):
 *   ice=rewrite   keep ICE on 127.0.0.1 (needs the Chromium flags of tests/browser/lib.mjs):
 *                 local host candidates and c= become 127.0.0.1, IPv6/TCP/mDNS candidates are
 *                 dropped, remote non-127 candidates are dropped. Default: leave SDP alone.
 *   demo=1        show the main screen without SIP (canned look only; nothing is dialled)
 *   dtmf=info     send DTMF as SIP INFO (default: RFC 4733 telephone-event when negotiated)
 *   debug=1       JsSIP debug log to the console
 *
 * For tests, window.tambunPhone = { ready, version, state, lastStats, stats() }.
 */
import JsSIP from 'jssip';

/* ------------------------------------------------------------------ text */

const TEXT = {
  id: {
    app_title: 'Tambun Telepon',
    language: 'Bahasa',
    logout: 'Keluar',
    demo_banner: 'MODE DEMO: hanya tampilan, tidak tersambung ke sentral. Panggilan tidak dapat dilakukan.',
    login_title: 'Masuk',
    login_ext: 'Nomor ekstensi',
    login_password: 'Kata sandi',
    login_remember: 'Ingat saya',
    login_remember_hint: 'Jika dicentang, kata sandi disimpan di peramban ini. Jangan centang di komputer bersama.',
    login_submit: 'Masuk',
    login_busy: 'Menghubungkan…',
    phone_title: 'Telepon',
    incoming_call: 'Panggilan masuk',
    incoming_video: 'Panggilan video masuk',
    answer: 'Jawab',
    answer_video: 'Jawab dengan video',
    decline: 'Tolak',
    mute: 'Bisukan',
    unmute: 'Aktifkan mikrofon',
    hold: 'Tahan',
    unhold: 'Lanjutkan',
    video_on: 'Nyalakan video',
    video_off: 'Matikan video',
    hangup: 'Tutup',
    dial_label: 'Nomor tujuan',
    dial_placeholder: 'Nomor tujuan',
    dialpad: 'Tombol angka',
    call_audio: 'Panggil',
    call_video: 'Panggilan video',
    backspace: 'Hapus satu angka',
    directory_title: 'Buku telepon',
    refresh: 'Muat ulang',
    directory_search: 'Cari di buku telepon',
    directory_search_placeholder: 'Cari nama, nomor, atau OPD',
    directory_loading: 'Memuat…',
    directory_empty: 'Tidak ada yang cocok.',
    directory_failed: 'Buku telepon tidak dapat dimuat.',
    directory_count: '{n} ekstensi',
    online: 'daring',
    offline: 'luring',
    call_this: 'Isi nomor {ext}',
    rooms_title: 'Ruang rapat',
    rooms_loading: 'Memuat…',
    rooms_failed: 'Daftar ruang rapat tidak dapat dimuat.',
    rooms_none: 'Tidak ada ruang rapat untuk OPD Anda.',
    room_join: 'Gabung',
    room_join_video: 'Gabung dengan video',
    room_screen: 'Bagikan layar',
    room_screen_stop: 'Hentikan berbagi layar',
    room_slot_empty: 'menunggu kamera',
    err_screen: 'Layar tidak dapat dibagikan: {why}',
    room_pin: 'PIN',
    room_people: '{n} peserta',
    room_empty: 'Belum ada peserta.',
    room_talking: 'sedang bicara',
    room_muted: 'dibisukan',
    room_moderator: 'moderator',
    room_mute: 'Bisukan',
    room_unmute: 'Aktifkan',
    room_kick: 'Keluarkan',
    room_mute_all: 'Bisukan semua',
    room_unmute_all: 'Aktifkan semua',
    room_lock: 'Kunci ruang',
    room_unlock: 'Buka kunci',
    room_locked: 'terkunci',
    room_action_failed: 'Tindakan moderator gagal: {why}',
    history_title: 'Riwayat panggilan',
    history_clear: 'Hapus',
    history_empty: 'Belum ada panggilan.',
    dir_in: 'Panggilan masuk',
    dir_out: 'Panggilan keluar',
    result_answered: 'Terjawab',
    result_missed: 'Tak terjawab',
    result_declined: 'Ditolak',
    result_busy: 'Sibuk',
    result_notfound: 'Tidak ditemukan',
    result_unavailable: 'Tidak dapat dihubungi',
    result_noanswer: 'Tidak dijawab',
    result_cancelled: 'Dibatalkan',
    result_failed: 'Gagal',
    reg_idle: 'Belum masuk',
    reg_connecting: 'Menghubungkan…',
    reg_registered: 'Terdaftar: {ext}',
    reg_failed: 'Tidak terdaftar',
    reg_disconnected: 'Terputus',
    reg_demo: 'Demo (tanpa SIP)',
    status_ready: 'Siap',
    status_media: 'Menyiapkan mikrofon…',
    status_media_video: 'Menyiapkan mikrofon dan kamera…',
    status_calling: 'Memanggil…',
    status_ringing: 'Berdering…',
    status_incoming: 'Panggilan masuk dari {peer}',
    status_answering: 'Menjawab…',
    status_connected: 'Terhubung {time}',
    status_held: 'Ditahan {time}',
    status_remote_held: 'Ditahan oleh lawan bicara {time}',
    status_ended: 'Panggilan berakhir',
    status_failed: 'Panggilan gagal',
    err_auth: 'Nomor ekstensi atau kata sandi salah.',
    err_login_empty: 'Isi nomor ekstensi dan kata sandi.',
    err_media_denied: 'Izin memakai mikrofon atau kamera ditolak. Izinkan di pengaturan peramban, lalu coba lagi.',
    err_media_missing: 'Mikrofon atau kamera tidak ditemukan.',
    err_media_busy: 'Mikrofon atau kamera sedang dipakai aplikasi lain.',
    err_media_other: 'Mikrofon atau kamera tidak dapat dipakai.',
    err_insecure: 'Buka halaman ini lewat https agar mikrofon dapat dipakai.',
    err_no_webrtc: 'Peramban ini tidak mendukung panggilan lewat web (WebRTC).',
    err_unreachable: 'Sentral telepon tidak dapat dihubungi. Periksa jaringan, lalu coba lagi.',
    err_disconnected: 'Sambungan ke sentral telepon terputus. Sedang mencoba menyambung kembali…',
    err_reg_failed: 'Pendaftaran ke sentral gagal (SIP {code}).',
    err_busy: 'Nomor yang dituju sedang sibuk.',
    err_notfound: 'Nomor yang dituju tidak ditemukan.',
    err_declined: 'Panggilan ditolak.',
    err_unavailable: 'Nomor yang dituju sedang tidak dapat dihubungi.',
    err_noanswer: 'Panggilan tidak dijawab.',
    err_call_failed: 'Panggilan gagal (SIP {code}).',
    err_call_media: 'Panggilan gagal: suara tidak dapat disambungkan.',
    err_call_generic: 'Panggilan gagal.',
    err_dial_empty: 'Masukkan nomor yang akan dipanggil.',
    err_dial_invalid: 'Nomor hanya boleh berisi angka, *, # dan +.',
    err_in_call: 'Masih ada panggilan yang berlangsung.',
    err_demo: 'Mode demo: panggilan tidak tersedia.',
    err_video: 'Video tidak dapat dinyalakan.',
    err_hold: 'Panggilan tidak dapat ditahan atau dilanjutkan saat ini.',
    caller_unknown: 'Tidak dikenal',
    dtmf_sent: 'Nada terkirim: {digits}',
    video_remote: 'Video lawan bicara',
    video_local: 'Video Anda',
    seconds: '{n} dtk',
  },
  en: {
    app_title: 'Tambun Phone',
    language: 'Language',
    logout: 'Log out',
    demo_banner: 'DEMO MODE: display only, not connected to the switch. Calls cannot be made.',
    login_title: 'Log in',
    login_ext: 'Extension number',
    login_password: 'Password',
    login_remember: 'Remember me',
    login_remember_hint: 'If ticked, the password is stored in this browser. Do not tick it on a shared computer.',
    login_submit: 'Log in',
    login_busy: 'Connecting…',
    phone_title: 'Phone',
    incoming_call: 'Incoming call',
    incoming_video: 'Incoming video call',
    answer: 'Answer',
    answer_video: 'Answer with video',
    decline: 'Decline',
    mute: 'Mute',
    unmute: 'Unmute',
    hold: 'Hold',
    unhold: 'Resume',
    video_on: 'Start video',
    video_off: 'Stop video',
    hangup: 'Hang up',
    dial_label: 'Number to call',
    dial_placeholder: 'Number to call',
    dialpad: 'Dial pad',
    call_audio: 'Call',
    call_video: 'Video call',
    backspace: 'Delete one digit',
    directory_title: 'Directory',
    refresh: 'Reload',
    directory_search: 'Search the directory',
    directory_search_placeholder: 'Search name, number or department',
    directory_loading: 'Loading…',
    directory_empty: 'Nothing matches.',
    directory_failed: 'The directory could not be loaded.',
    directory_count: '{n} extensions',
    online: 'online',
    offline: 'offline',
    call_this: 'Fill in number {ext}',
    rooms_title: 'Meeting rooms',
    rooms_loading: 'Loading…',
    rooms_failed: 'The meeting rooms could not be loaded.',
    rooms_none: 'No meeting rooms for your department.',
    room_join: 'Join',
    room_join_video: 'Join with video',
    room_screen: 'Share screen',
    room_screen_stop: 'Stop sharing',
    room_slot_empty: 'waiting for a camera',
    err_screen: 'The screen cannot be shared: {why}',
    room_pin: 'PIN',
    room_people: '{n} participants',
    room_empty: 'Nobody is in yet.',
    room_talking: 'talking',
    room_muted: 'muted',
    room_moderator: 'moderator',
    room_mute: 'Mute',
    room_unmute: 'Unmute',
    room_kick: 'Remove',
    room_mute_all: 'Mute everyone',
    room_unmute_all: 'Unmute everyone',
    room_lock: 'Lock the room',
    room_unlock: 'Unlock',
    room_locked: 'locked',
    room_action_failed: 'The moderator action failed: {why}',
    history_title: 'Call history',
    history_clear: 'Clear',
    history_empty: 'No calls yet.',
    dir_in: 'Incoming',
    dir_out: 'Outgoing',
    result_answered: 'Answered',
    result_missed: 'Missed',
    result_declined: 'Declined',
    result_busy: 'Busy',
    result_notfound: 'Not found',
    result_unavailable: 'Unavailable',
    result_noanswer: 'No answer',
    result_cancelled: 'Cancelled',
    result_failed: 'Failed',
    reg_idle: 'Not logged in',
    reg_connecting: 'Connecting…',
    reg_registered: 'Registered: {ext}',
    reg_failed: 'Not registered',
    reg_disconnected: 'Disconnected',
    reg_demo: 'Demo (no SIP)',
    status_ready: 'Ready',
    status_media: 'Preparing the microphone…',
    status_media_video: 'Preparing the microphone and camera…',
    status_calling: 'Calling…',
    status_ringing: 'Ringing…',
    status_incoming: 'Incoming call from {peer}',
    status_answering: 'Answering…',
    status_connected: 'Connected {time}',
    status_held: 'On hold {time}',
    status_remote_held: 'Held by the other party {time}',
    status_ended: 'Call ended',
    status_failed: 'Call failed',
    err_auth: 'The extension number or password is wrong.',
    err_login_empty: 'Enter the extension number and the password.',
    err_media_denied: 'Permission to use the microphone or camera was refused. Allow it in the browser settings, then try again.',
    err_media_missing: 'No microphone or camera was found.',
    err_media_busy: 'The microphone or camera is being used by another application.',
    err_media_other: 'The microphone or camera cannot be used.',
    err_insecure: 'Open this page over https so that the microphone can be used.',
    err_no_webrtc: 'This browser does not support calls on the web (WebRTC).',
    err_unreachable: 'The phone switch cannot be reached. Check the network, then try again.',
    err_disconnected: 'The connection to the phone switch was lost. Trying to reconnect…',
    err_reg_failed: 'Registration with the switch failed (SIP {code}).',
    err_busy: 'The number you called is busy.',
    err_notfound: 'The number you called does not exist.',
    err_declined: 'The call was declined.',
    err_unavailable: 'The number you called cannot be reached right now.',
    err_noanswer: 'The call was not answered.',
    err_call_failed: 'The call failed (SIP {code}).',
    err_call_media: 'The call failed: the audio could not be connected.',
    err_call_generic: 'The call failed.',
    err_dial_empty: 'Enter a number to call.',
    err_dial_invalid: 'A number may only contain digits, *, # and +.',
    err_in_call: 'A call is still in progress.',
    err_demo: 'Demo mode: calls are not available.',
    err_video: 'Video could not be started.',
    err_hold: 'The call cannot be put on hold or resumed right now.',
    caller_unknown: 'Unknown',
    dtmf_sent: 'Tones sent: {digits}',
    video_remote: 'Other party’s video',
    video_local: 'Your video',
    seconds: '{n} s',
  },
};
const LANGS = Object.keys(TEXT);

/* ------------------------------------------------------------------ setup */

const q = new URLSearchParams(location.search);
const opts = {
  ice: q.get('ice') === 'rewrite' ? 'rewrite' : 'none',
  demo: q.get('demo') === '1',
  dtmf: q.get('dtmf') === 'info' ? 'info' : 'auto',
  debug: q.get('debug') === '1',
};
const KEY = {
  lang: 'tambun.phone.lang',
  ext: 'tambun.phone.ext',
  remember: 'tambun.phone.remember',
  history: (ext) => 'tambun.phone.history.' + ext,
};
const HISTORY_MAX = 100;
const PC_CONFIG = { iceServers: [], rtcpMuxPolicy: 'require', bundlePolicy: 'balanced' };

const $ = (id) => document.getElementById(id);

function store(key, value) {
  try {
    if (value === null || value === undefined) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch (e) { /* storage disabled: keep working without it */ }
}
function load(key) {
  try { return localStorage.getItem(key); } catch (e) { return null; }
}

function sameOriginWs() {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
}

const state = {
  version: JsSIP.version,
  lang: initialLang(),
  demo: opts.demo,
  ice: opts.ice,
  ext: null,
  domain: location.hostname,
  wsUrl: sameOriginWs(),
  config: 'pending',       // pending | loaded | fallback
  ws: 'idle',              // idle | connecting | connected | disconnected
  reg: 'idle',             // idle | connecting | registered | failed | unregistered | demo
  regCode: null,
  loggedIn: false,
  call: null,              // the current or last call (see newCall)
  calls: [],               // summaries of this page's calls, oldest first
  error: null,             // { key, text } shown in error-message
  directory: 'idle',       // idle | loading | loaded | failed
};

let password = null;       // in memory only, unless "remember" is ticked
let ua = null;
let session = null;        // the JsSIP RTCSession of the current call
let localStream = null;    // our microphone (and camera) for the current call
let directoryData = [];
let sampler = null;
let ticker = null;
let callSeq = 0;
let pendingLogin = null;   // { resolve } while a login attempt waits for the switch
let directoryTimer = null; // refreshes presence in the directory every 60 s while logged in

function initialLang() {
  const saved = load(KEY.lang);
  if (saved && TEXT[saved]) return saved;
  return 'id';
}

/* ------------------------------------------------------------------ text helpers */

function t(key, vars) {
  let s = TEXT[state.lang][key];
  if (s === undefined) s = TEXT.id[key];
  if (s === undefined) return key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined ? m : String(vars[k])));
  return s;
}

function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.title = t('app_title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  $('lang-select').value = state.lang;
  $('remote-video').setAttribute('aria-label', t('video_remote'));
  $('local-video').setAttribute('aria-label', t('video_local'));
  if (state.error) showError(state.error.key, state.error.vars);
  render();
  renderDirectory();
  renderHistory();
}

/* ------------------------------------------------------------------ errors */

function showError(key, vars) {
  state.error = { key, vars: vars || null, text: t(key, vars) };
  const el = $('error-message');
  el.textContent = state.error.text;
  el.dataset.key = key;
  el.hidden = false;
}

function clearError(onlyKey) {
  if (onlyKey && (!state.error || state.error.key !== onlyKey)) return;
  state.error = null;
  const el = $('error-message');
  el.textContent = '';
  delete el.dataset.key;
  el.hidden = true;
}

// getUserMedia failures -> a dictionary key
function mediaErrorKey(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') return 'err_media_denied';
  if (name === 'NotFoundError' || name === 'DevicesNotFoundError' || name === 'OverconstrainedError') return 'err_media_missing';
  if (name === 'NotReadableError' || name === 'TrackStartError' || name === 'AbortError') return 'err_media_busy';
  return 'err_media_other';
}

// a failed call (JsSIP 'failed' event) -> { key, vars, result } or null (no error to show)
function callFailure(c, e) {
  const code = e.message && e.message.status_code ? e.message.status_code : null;
  const cause = e.cause;
  const C = JsSIP.C.causes;
  if (e.originator === 'local') {
    if (cause === C.CANCELED) return { key: null, result: c.direction === 'incoming' ? 'declined' : 'cancelled' };
    if (cause === C.REJECTED) return { key: null, result: 'declined' };
    if (cause === C.USER_DENIED_MEDIA_ACCESS) return { key: 'err_media_denied', result: 'failed' };
    if (cause === C.WEBRTC_ERROR || cause === C.BAD_MEDIA_DESCRIPTION || cause === C.INCOMPATIBLE_SDP) return { key: 'err_call_media', result: 'failed' };
  }
  if (c.direction === 'incoming' && e.originator === 'remote' && cause === C.CANCELED) return { key: null, result: 'missed' };
  if (cause === C.CONNECTION_ERROR) return { key: 'err_unreachable', result: 'failed' };
  if (code === 486 || code === 600) return { key: 'err_busy', result: 'busy' };
  if (code === 404 || code === 604) return { key: 'err_notfound', result: 'notfound' };
  if (code === 603) return { key: 'err_declined', result: 'declined' };
  if (code === 480 || code === 410) return { key: 'err_unavailable', result: 'unavailable' };
  if (code === 408 || cause === C.NO_ANSWER || cause === C.REQUEST_TIMEOUT) return { key: 'err_noanswer', result: 'noanswer' };
  if (code === 487) return { key: null, result: c.direction === 'incoming' ? 'missed' : 'cancelled' };
  if (code === 488 || code === 606 || cause === C.INCOMPATIBLE_SDP || cause === C.MISSING_SDP || cause === C.BAD_MEDIA_DESCRIPTION) {
    return { key: code ? 'err_call_failed' : 'err_call_media', vars: { code }, result: 'failed' };
  }
  if (code) return { key: 'err_call_failed', vars: { code }, result: 'failed' };
  if (cause === C.WEBRTC_ERROR || cause === C.RTP_TIMEOUT) return { key: 'err_call_media', result: 'failed' };
  return { key: 'err_call_generic', result: 'failed' };
}

/* ------------------------------------------------------------------ SDP: loopback-only ICE (?ice=rewrite) */

// Same approach as the peers harness (peers/webrtc/softphone.js, ice=rewrite). It relies on
// Chromium's --webrtc-ip-handling-policy=default_public_and_private_interfaces: Chromium binds
// its UDP sockets to 0.0.0.0:P and advertises one host candidate (the default-route address).
// That candidate and c= become 127.0.0.1:P, so the far end only ever sends to 127.0.0.1.
function isLoopback4(ip) { return /^127\.\d+\.\d+\.\d+$/.test(ip); }

function fixLocalSdp(sdp, info) {
  if (opts.ice !== 'rewrite') return sdp;
  const out = [];
  for (let l of sdp.split(/\r\n/)) {
    if (l.startsWith('a=candidate:')) {
      const p = l.slice(2).split(' ');   // candidate:F comp proto prio ip port typ T ...
      const proto = (p[2] || '').toLowerCase();
      const ip = p[4] || '';
      if (proto !== 'udp' || ip.indexOf(':') >= 0 || ip.endsWith('.local')) { info.dropped++; continue; }
      if (!isLoopback4(ip)) { p[4] = '127.0.0.1'; l = 'a=' + p.join(' '); info.rewritten++; }
      info.kept++;
    } else if (/^c=IN IP[46] /.test(l) && !/^c=IN IP4 127\./.test(l)) {
      l = 'c=IN IP4 127.0.0.1';
    } else if (/^a=rtcp:\d+ IN IP[46] /.test(l) && !/ IN IP4 127\./.test(l)) {
      l = l.replace(/ IN IP[46] .*$/, ' IN IP4 127.0.0.1');
    }
    out.push(l);
  }
  return out.join('\r\n');
}

function fixRemoteSdp(sdp, info) {
  if (opts.ice !== 'rewrite') return sdp;
  return sdp.split(/\r\n/).filter((l) => {
    if (!l.startsWith('a=candidate:')) return true;
    const p = l.slice(2).split(' ');
    const ok = (p[2] || '').toLowerCase() === 'udp' && isLoopback4(p[4] || '');
    if (ok) info.kept++; else info.dropped++;
    return ok;
  }).join('\r\n');
}

function summarizeSdp(sdp) {
  const media = (sdp.match(/^m=\w+ \d+ [^ ]+/mg) || []).map((m) => m.slice(2));
  const c = sdp.match(/^c=IN IP\d ([^\s]+)/m);
  const setup = sdp.match(/^a=setup:(\w+)/m);
  return {
    media,
    conn: c ? c[1] : null,
    setup: setup ? setup[1] : null,
    video: /^m=video [1-9]/m.test(sdp),
    candidates: (sdp.match(/^a=candidate:.*$/mg) || []).map((l) => l.split(' ').slice(4, 8).join(' ')),
  };
}

/* ------------------------------------------------------------------ stats (as peers/webrtc/softphone.js, plus video) */

async function pcStats(pc) {
  if (!pc) return null;
  const report = await pc.getStats();
  const by = {};
  report.forEach((s) => { by[s.id] = s; });
  const o = {
    t: Date.now(),
    connectionState: pc.connectionState,
    iceConnectionState: pc.iceConnectionState,
    signalingState: pc.signalingState,
    packetsSent: 0, bytesSent: 0, packetsReceived: 0, bytesReceived: 0,
    packetsLost: null, jitter: null, audioLevel: null, totalAudioEnergy: null,
    codecSend: null, codecRecv: null,
    framesSent: null, framesEncoded: null, framesDecoded: null, framesReceived: null,
    video: {
      packetsSent: 0, bytesSent: 0, packetsReceived: 0, bytesReceived: 0,
      framesSent: null, framesEncoded: null, framesDecoded: null, framesReceived: null,
      frameWidth: null, frameHeight: null, codecSend: null, codecRecv: null,
    },
    dtlsState: null, dtlsRole: null, iceState: null, srtpCipher: null, tlsVersion: null,
    localCandidate: null, remoteCandidate: null, rtt: null,
  };
  const codec = (id) => {
    const c = id && by[id];
    return c ? (c.mimeType.replace(/^(audio|video)\//, '') + '/' + c.clockRate + (c.channels > 1 ? '/' + c.channels : '') + ' pt ' + c.payloadType) : null;
  };
  const add = (a, b) => (a === null ? 0 : a) + (b || 0);
  let transport = null;
  let pair = null;
  report.forEach((s) => {
    const kind = s.kind || s.mediaType;
    if (s.type === 'outbound-rtp' && kind === 'audio') {
      o.packetsSent += s.packetsSent || 0; o.bytesSent += s.bytesSent || 0;
      o.codecSend = codec(s.codecId) || o.codecSend;
    } else if (s.type === 'inbound-rtp' && kind === 'audio') {
      o.packetsReceived += s.packetsReceived || 0; o.bytesReceived += s.bytesReceived || 0;
      o.packetsLost = s.packetsLost === undefined ? null : s.packetsLost;
      o.jitter = s.jitter === undefined ? null : s.jitter;
      o.audioLevel = s.audioLevel === undefined ? null : s.audioLevel;
      o.totalAudioEnergy = s.totalAudioEnergy === undefined ? null : s.totalAudioEnergy;
      o.codecRecv = codec(s.codecId) || o.codecRecv;
    } else if (s.type === 'outbound-rtp' && kind === 'video') {
      const v = o.video;
      v.packetsSent += s.packetsSent || 0; v.bytesSent += s.bytesSent || 0;
      v.framesSent = add(v.framesSent, s.framesSent);
      v.framesEncoded = add(v.framesEncoded, s.framesEncoded);
      v.codecSend = codec(s.codecId) || v.codecSend;
      v.sendWidth = s.frameWidth || v.sendWidth || null; v.sendHeight = s.frameHeight || v.sendHeight || null;
    } else if (s.type === 'inbound-rtp' && kind === 'video') {
      const v = o.video;
      v.packetsReceived += s.packetsReceived || 0; v.bytesReceived += s.bytesReceived || 0;
      v.framesDecoded = add(v.framesDecoded, s.framesDecoded);
      v.framesReceived = add(v.framesReceived, s.framesReceived);
      (v.slots = v.slots || []).push({ mid: s.mid === undefined ? null : String(s.mid), framesDecoded: s.framesDecoded || 0, packetsReceived: s.packetsReceived || 0, frameWidth: s.frameWidth || null, frameHeight: s.frameHeight || null });
      v.frameWidth = s.frameWidth || v.frameWidth; v.frameHeight = s.frameHeight || v.frameHeight;
      v.codecRecv = codec(s.codecId) || v.codecRecv;
    } else if (s.type === 'transport') {
      transport = transport || s;
    } else if (s.type === 'candidate-pair' && (s.selected || s.nominated) && s.state === 'succeeded') {
      pair = pair || s;   // Firefox marks the pair itself; Chromium names it from the transport
    }
  });
  o.framesSent = o.video.framesSent; o.framesEncoded = o.video.framesEncoded;
  o.framesDecoded = o.video.framesDecoded; o.framesReceived = o.video.framesReceived;
  if (transport) {
    o.dtlsState = transport.dtlsState || null; o.dtlsRole = transport.dtlsRole || null;
    o.iceState = transport.iceState || null; o.srtpCipher = transport.srtpCipher || null;
    o.tlsVersion = transport.tlsVersion || null;
    if (transport.selectedCandidatePairId && by[transport.selectedCandidatePairId]) pair = by[transport.selectedCandidatePairId];
  }
  if (pair) {
    const l = by[pair.localCandidateId];
    const r = by[pair.remoteCandidateId];
    o.localCandidate = l ? (l.address || l.ip) + ':' + l.port + ' ' + l.candidateType : null;
    o.remoteCandidate = r ? (r.address || r.ip) + ':' + r.port + ' ' + r.candidateType : null;
    o.rtt = pair.currentRoundTripTime === undefined ? null : pair.currentRoundTripTime;
  }
  return o;
}

async function stats() {
  const c = state.call;
  if (!c) return null;
  const pc = c.pcObj;
  if (!pc || pc.signalingState === 'closed') return c.lastStats;
  try {
    const s = await pcStats(pc);
    if (s) { c.lastStats = s; api.lastStats = s; }
    return s;
  } catch (e) {
    return c.lastStats;
  }
}

/* ------------------------------------------------------------------ config + SIP registration */

async function fetchConfig() {
  try {
    const r = await fetch('/phone/api/config', { cache: 'no-store', credentials: 'same-origin' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const j = await r.json();
    if (j && typeof j.domain === 'string' && j.domain.trim()) state.domain = j.domain.trim();
    if (j && typeof j.ws_url === 'string' && /^wss?:\/\/[^\s]+$/i.test(j.ws_url.trim())) state.wsUrl = j.ws_url.trim();
    state.config = 'loaded';
  } catch (e) {
    state.domain = location.hostname;
    state.wsUrl = sameOriginWs();
    state.config = 'fallback';
  }
}

function setLoginBusy(busy) {
  const b = $('login-submit');
  b.disabled = busy;
  b.textContent = busy ? t('login_busy') : t('login_submit');
  b.dataset.i18n = busy ? 'login_busy' : 'login_submit';
  $('login-ext').disabled = busy;
  $('login-password').disabled = busy;
}

// Start the UA; resolves 'registered' or the error key once the switch has answered.
function startUa(ext, pw) {
  if (opts.debug) JsSIP.debug.enable('JsSIP:*'); else JsSIP.debug.disable();
  const socket = new JsSIP.WebSocketInterface(state.wsUrl);
  const u = new JsSIP.UA({
    sockets: [socket],
    uri: 'sip:' + ext + '@' + state.domain,
    password: pw,
    display_name: '',
    register: true,
    register_expires: 600,
    session_timers: false,
    user_agent: 'Tambun-Phone JsSIP/' + JsSIP.version,
    connection_recovery_min_interval: 2,
    connection_recovery_max_interval: 30,
  });
  ua = u;
  state.ext = ext;
  state.ws = 'connecting';
  state.reg = 'connecting';
  state.regCode = null;
  render();
  return new Promise((resolve) => {
    pendingLogin = { resolve };
    const settle = (v) => { if (pendingLogin) { const p = pendingLogin; pendingLogin = null; p.resolve(v); } };
    u.on('connecting', () => { if (ua !== u) return; state.ws = 'connecting'; render(); });
    u.on('connected', () => {
      if (ua !== u) return;
      state.ws = 'connected';
      clearError('err_disconnected');
      render();
    });
    u.on('disconnected', () => {
      if (ua !== u) return;
      state.ws = 'disconnected';
      if (pendingLogin) { settle('err_unreachable'); return; }
      if (state.loggedIn) showError('err_disconnected');
      render();
    });
    u.on('registered', (e) => {
      if (ua !== u) return;
      state.reg = 'registered';
      state.regCode = e.response ? e.response.status_code : null;
      clearError('err_disconnected');
      settle('registered');
      render();
    });
    u.on('unregistered', () => { if (ua !== u) return; state.reg = 'unregistered'; render(); });
    u.on('registrationFailed', (e) => {
      if (ua !== u) return;
      const code = e.response ? e.response.status_code : null;
      state.reg = 'failed';
      state.regCode = code;
      let key;
      if (code === 401 || code === 403 || code === 404 || code === 407 || e.cause === JsSIP.C.causes.AUTHENTICATION_ERROR) key = 'err_auth';
      else if (code) key = 'err_reg_failed';
      else key = 'err_unreachable';
      if (pendingLogin) { settle({ key, code }); return; }
      // a refresh failed after login
      if (key === 'err_auth') { logout(); showError('err_auth'); return; }
      showError(key, { code });
      render();
    });
    u.on('newRTCSession', onNewSession);
    u.start();
  });
}

function stopUa() {
  const u = ua;
  ua = null;
  pendingLogin = null;
  if (!u) return;
  try { if (session) session.terminate(); } catch (e) { /* already gone */ }
  try { u.stop(); } catch (e) { /* already stopped */ }
}

async function login(ext, pw, remember) {
  clearError();
  if (!ext || !pw) { showError('err_login_empty'); return; }
  if (!/^[A-Za-z0-9._+-]{1,64}$/.test(ext)) { showError('err_auth'); return; }
  setLoginBusy(true);
  unlockAudio();
  if (state.config !== 'loaded') await fetchConfig();
  // JsSIP would wait 32 s (Timer F) for a REGISTER nobody answers; give up sooner
  const timer = setTimeout(() => { if (pendingLogin) { const p = pendingLogin; pendingLogin = null; p.resolve('err_unreachable'); } }, 15000);
  const r = await startUa(ext, pw);
  clearTimeout(timer);
  setLoginBusy(false);
  if (r !== 'registered') {
    stopUa();
    state.reg = 'failed';
    state.ws = 'idle';
    const key = typeof r === 'string' ? r : r.key;
    showError(key, { code: r && r.code });
    render();
    return;
  }
  password = pw;
  state.loggedIn = true;
  store(KEY.ext, ext);
  store(KEY.remember, remember ? JSON.stringify({ ext, password: pw }) : null);
  $('login-password').value = '';
  showMain();
  loadDirectory();
  loadRooms();
  pollRooms();
  renderHistory();
  if (!directoryTimer) directoryTimer = setInterval(() => { if (state.loggedIn && document.visibilityState === 'visible') { loadDirectory(); loadRooms(); } }, 60000);
}

function logout() {
  stopUa();
  password = null;
  state.loggedIn = false;
  state.reg = 'idle';
  state.ws = 'idle';
  state.regCode = null;
  directoryData = [];
  state.directory = 'idle';
  if (directoryTimer) clearInterval(directoryTimer);
  directoryTimer = null;
  roomsData = [];
  roomsState = 'idle';
  if (roomsTimer) clearInterval(roomsTimer);
  roomsTimer = null;
  renderRooms();
  store(KEY.remember, null);
  $('login-remember').checked = false;
  clearError();
  showLogin();
}

function showMain() {
  $('login-view').hidden = true;
  $('main-view').hidden = false;
  $('logout').hidden = false;
  render();
  $('dial-input').focus();
}

function showLogin() {
  $('main-view').hidden = true;
  $('login-view').hidden = false;
  $('logout').hidden = true;
  $('login-ext').value = state.ext || load(KEY.ext) || '';
  render();
}

/* ------------------------------------------------------------------ calls */

function newCall(direction, peer, video) {
  const c = {
    id: ++callSeq, direction, peer, peerName: null, video: !!video,
    status: 'new',        // media | calling | ringing | incoming | answering | confirmed | ended | failed
    cause: null, code: null, originator: null,
    muted: false, held: false, remoteHeld: false, videoOn: !!video,
    t_start: Date.now(), t_confirmed: null, t_ended: null,
    pc: { connection: 'new', ice: 'new' },
    sdp: { local: null, remote: null, localFix: { kept: 0, rewritten: 0, dropped: 0 }, remoteFix: { kept: 0, dropped: 0 } },
    dtmf: '', dtmfIn: '', dtmfTransport: null, renegotiated: 0, lastStats: null,
  };
  Object.defineProperty(c, 'pcObj', { enumerable: false, writable: true, value: null });
  state.call = c;
  state.calls.push(c);
  if (state.calls.length > 50) state.calls.shift();
  return c;
}

function normalizeNumber(raw) {
  const s = String(raw || '').replace(/[\s().-]/g, '');
  if (!s) return { key: 'err_dial_empty' };
  if (!/^\+?[0-9*#]+$/.test(s)) return { key: 'err_dial_invalid' };
  return { number: s };
}

function targetUri(number) {
  // '#' must be escaped in a SIP URI user part
  return 'sip:' + number.replace(/#/g, '%23') + '@' + state.domain;
}

async function getMedia(video) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    const e = new Error('no mediaDevices');
    e.name = window.isSecureContext === false ? 'InsecureContext' : 'NoWebRTC';
    throw e;
  }
  return navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: video ? { width: { ideal: 640 }, height: { ideal: 480 } } : false,
  });
}

function mediaFailure(err) {
  if (err && err.name === 'InsecureContext') return 'err_insecure';
  if (err && err.name === 'NoWebRTC') return 'err_no_webrtc';
  return mediaErrorKey(err);
}

function stopLocalMedia() {
  if (localStream) for (const tr of localStream.getTracks()) tr.stop();
  localStream = null;
  const lv = $('local-video');
  lv.srcObject = null;
  lv.hidden = true;
}

function clearRemoteMedia() {
  $('remote-audio').srcObject = null;
  const rv = $('remote-video');
  rv.srcObject = null;
  rv.hidden = true;
}

function showLocalVideo() {
  const lv = $('local-video');
  const vt = localStream ? localStream.getVideoTracks().filter((x) => x.readyState === 'live') : [];
  if (vt.length) {
    lv.srcObject = new MediaStream(vt);
    lv.hidden = false;
    lv.play().catch(() => {});
  } else {
    lv.srcObject = null;
    lv.hidden = true;
  }
}

async function placeCall(video, opts) {
  clearError();
  if (state.demo) { showError('err_demo'); return; }
  if (!ua || state.reg !== 'registered') { showError(state.ws === 'connected' ? 'err_reg_failed' : 'err_unreachable', { code: state.regCode || '-' }); return; }
  if (session || (state.call && state.call.status === 'media')) { showError('err_in_call'); return; }
  const n = normalizeNumber($('dial-input').value);
  if (n.key) { showError(n.key); return; }
  const c = newCall('outgoing', n.number, video);
  c.slots = video && opts && opts.slots ? opts.slots : 0;
  c.peerName = directoryName(n.number);
  c.status = 'media';
  render();
  try {
    localStream = await getMedia(video);
  } catch (err) {
    c.status = 'failed'; c.cause = 'media'; c.t_ended = Date.now();
    showError(mediaFailure(err));
    addHistory(c, 'failed');
    render();
    return;
  }
  if (state.call !== c || !ua) { stopLocalMedia(); return; }
  c.status = 'calling';
  showLocalVideo();
  try {
    let pc = null;
    const s = ua.call(targetUri(n.number), {
      mediaStream: localStream,
      pcConfig: PC_CONFIG,
      eventHandlers: {
        peerconnection: (e) => { pc = e.peerconnection; hookPc(c, pc); },
        connecting: () => { if (pc && c.slots) addRoomSlots(pc, c.slots); },
      },
    });
    attachSession(s, c);
  } catch (err) {
    c.status = 'failed'; c.cause = 'call'; c.t_ended = Date.now();
    stopLocalMedia();
    showError('err_call_generic');
    addHistory(c, 'failed');
  }
  render();
}

function onNewSession(e) {
  if (e.originator !== 'remote') return;
  const s = e.session;
  const uri = s.remote_identity && s.remote_identity.uri;
  const number = uri && uri.user ? uri.user : '';
  const display = s.remote_identity && s.remote_identity.display_name ? s.remote_identity.display_name : null;
  if (session || (state.call && state.call.status === 'media')) {   // one call at a time
    const busy = { id: 0, direction: 'incoming', peer: number, t_start: Date.now(), t_confirmed: null, t_ended: Date.now(), video: false };
    addHistory(busy, 'missed');
    try { s.terminate({ status_code: 486, reason_phrase: 'Busy Here' }); } catch (err) { /* gone */ }
    return;
  }
  const offerVideo = !!(e.request && e.request.body && /^m=video [1-9]/m.test(e.request.body));
  const c = newCall('incoming', number, offerVideo);
  c.videoOn = false;
  c.peerName = display || directoryName(number);
  c.status = 'incoming';
  attachSession(s, c);
  s.on('peerconnection', (ev) => hookPc(c, ev.peerconnection));
  startRing();
  render();
}

async function answerCall(video) {
  const s = session;
  const c = state.call;
  if (!s || !c || c.status !== 'incoming') return;
  stopRing();
  clearError();
  c.status = 'answering';
  render();
  try {
    localStream = await getMedia(video);
  } catch (err) {
    const key = mediaFailure(err);
    showError(key);
    c.status = 'failed';
    try { s.terminate({ status_code: 480, reason_phrase: 'Temporarily Unavailable' }); } catch (e2) { /* gone */ }
    return;
  }
  if (session !== s || s.isEnded()) { stopLocalMedia(); return; }
  c.videoOn = !!video;
  showLocalVideo();
  try {
    s.answer({ mediaStream: localStream, pcConfig: PC_CONFIG });
  } catch (err) {
    showError('err_call_generic');
    try { s.terminate(); } catch (e2) { /* gone */ }
  }
  render();
}

function declineCall() {
  const s = session;
  if (!s || !state.call || state.call.status !== 'incoming') return;
  stopRing();
  try { s.terminate({ status_code: 603, reason_phrase: 'Decline' }); } catch (e) { /* gone */ }
}

function hangupCall() {
  const c = state.call;
  if (c && c.status === 'media') { c.status = 'ended'; c.t_ended = Date.now(); stopLocalMedia(); render(); return; }
  if (!session) return;
  try { session.terminate(); } catch (e) { /* gone */ }
}

function hookPc(c, pc) {
  if (c.pcObj === pc) return;
  c.pcObj = pc;
  const remote = { audio: new MediaStream(), video: new MediaStream() };
  pc.addEventListener('track', (e) => {
    const tr = e.track;
    if (tr.kind === 'audio') {
      remote.audio.addTrack(tr);
      const a = $('remote-audio');
      a.srcObject = remote.audio;
      a.play().catch(() => {});
    } else if (tr.kind === 'video') {
      if (c.slots) { renderGrid(); return; }
      remote.video.addTrack(tr);
      const v = $('remote-video');
      v.srcObject = remote.video;
      const show = () => { if (state.call === c) { v.hidden = false; v.play().catch(() => {}); } };
      const hide = () => { if (remote.video.getVideoTracks().every((x) => x.muted || x.readyState === 'ended')) v.hidden = true; };
      tr.addEventListener('unmute', show);
      tr.addEventListener('mute', hide);
      tr.addEventListener('ended', hide);
      if (!tr.muted) show();
    }
  });
  pc.addEventListener('iceconnectionstatechange', () => { c.pc.ice = pc.iceConnectionState; });
  pc.addEventListener('connectionstatechange', () => { c.pc.connection = pc.connectionState; });
  if (!sampler) {
    sampler = setInterval(() => {
      const cur = state.call;
      if (cur && cur.pcObj && (cur.status === 'confirmed' || cur.status === 'answering' || cur.status === 'calling' || cur.status === 'ringing')) stats();
    }, 1000);
  }
}

function attachSession(s, c) {
  session = s;
  s.on('sdp', (e) => {
    if (e.originator === 'local') {
      e.sdp = fixLocalSdp(e.sdp, c.sdp.localFix);
      c.sdp.local = summarizeSdp(e.sdp);
    } else {
      e.sdp = fixRemoteSdp(e.sdp, c.sdp.remoteFix);
      c.sdp.remote = summarizeSdp(e.sdp);
    }
  });
  s.on('progress', () => { if (c.status === 'calling') { c.status = 'ringing'; render(); } });
  s.on('accepted', () => { if (c.status !== 'confirmed') { c.status = 'confirmed'; c.t_confirmed = Date.now(); render(); } });
  s.on('confirmed', () => { if (!c.t_confirmed) c.t_confirmed = Date.now(); c.status = 'confirmed'; render(); });
  s.on('hold', (e) => { if (e.originator === 'remote') c.remoteHeld = true; else c.held = true; render(); });
  s.on('unhold', (e) => { if (e.originator === 'remote') c.remoteHeld = false; else c.held = false; render(); });
  s.on('newDTMF', (e) => { if (e.originator === 'remote' && e.dtmf) c.dtmfIn = ((c.dtmfIn || '') + e.dtmf.tone).slice(-24); });
  s.on('muted', () => { c.muted = true; render(); });
  s.on('unmuted', () => { c.muted = false; render(); });
  s.on('ended', (e) => finishCall(s, c, 'ended', e));
  s.on('failed', (e) => finishCall(s, c, 'failed', e));
}

function finishCall(s, c, how, e) {
  stopRing();
  c.t_ended = Date.now();
  c.cause = e.cause;
  c.originator = e.originator;
  c.code = e.message && e.message.status_code ? e.message.status_code : null;
  let result;
  if (how === 'ended' || c.t_confirmed) {
    c.status = 'ended';
    result = 'answered';
  } else {
    c.status = 'failed';
    const f = callFailure(c, e);
    result = f.result;
    if (f.key) showError(f.key, f.vars);
    if (!f.key || result === 'missed' || result === 'cancelled' || result === 'declined') c.status = 'ended';
  }
  if (session === s) session = null;
  stopLocalMedia();
  clearRemoteMedia();
  addHistory(c, result);
  render();
}

function toggleMute() {
  const s = session;
  const c = state.call;
  if (!s || !c || c.status !== 'confirmed') return;
  if (s.isMuted().audio) s.unmute({ audio: true }); else s.mute({ audio: true });
  c.muted = s.isMuted().audio;
  render();
}

function toggleHold() {
  const s = session;
  const c = state.call;
  if (!s || !c || c.status !== 'confirmed') return;
  const ok = s.isOnHold().local ? s.unhold() : s.hold();
  if (!ok) showError('err_hold');
  c.held = s.isOnHold().local;
  render();
}

// Video on/off during a call.
//  - Off: the camera is stopped and the video sender sends nothing (replaceTrack(null));
//    no re-INVITE, the m=video line stays.
//  - On, when a video sender already sends (a video call, or video turned on before): a new
//    camera track goes into the same sender (replaceTrack); no re-INVITE.
//  - On, in a call without a sending video m-line (started audio-only, or answered audio-only):
//    addTrack() and session.renegotiate() -> re-INVITE whose offer carries m=video sendrecv.
async function toggleVideo() {
  const s = session;
  const c = state.call;
  if (!s || !c || c.status !== 'confirmed' || !c.pcObj) return;
  const pc = c.pcObj;
  const sender = pc.getSenders().find((x) => x.track ? x.track.kind === 'video' : senderKind(pc, x) === 'video');
  if (c.videoOn) {
    if (sender) { try { await sender.replaceTrack(null); } catch (e) { /* keep going */ } }
    if (localStream) for (const tr of localStream.getVideoTracks()) { tr.stop(); localStream.removeTrack(tr); }
    c.videoOn = false;
    showLocalVideo();
    render();
    return;
  }
  let cam;
  try {
    cam = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } } });
  } catch (err) {
    showError(mediaFailure(err));
    return;
  }
  const track = cam.getVideoTracks()[0];
  if (session !== s) { track.stop(); return; }
  if (!localStream) localStream = new MediaStream();
  localStream.addTrack(track);
  const tx = sender && pc.getTransceivers().find((x) => x.sender === sender);
  const sending = tx && (tx.currentDirection === 'sendrecv' || tx.currentDirection === 'sendonly');
  try {
    if (sender && sending) {
      await sender.replaceTrack(track);
    } else {
      pc.addTrack(track, localStream);
      if (!s.renegotiate()) throw new Error('renegotiate refused');
      c.renegotiated = (c.renegotiated || 0) + 1;
    }
    c.videoOn = true;
    c.video = true;
  } catch (err) {
    track.stop();
    localStream.removeTrack(track);
    showError('err_video');
  }
  showLocalVideo();
  render();
}

function senderKind(pc, sender) {
  const tx = pc.getTransceivers().find((x) => x.sender === sender);
  return tx && tx.receiver && tx.receiver.track ? tx.receiver.track.kind : null;
}

function sendDtmf(key) {
  const s = session;
  const c = state.call;
  if (!s || !c || c.status !== 'confirmed') return false;
  let type = JsSIP.C.DTMF_TRANSPORT.INFO;
  if (opts.dtmf !== 'info' && c.pcObj) {
    const snd = c.pcObj.getSenders().find((x) => x.dtmf && (x.track ? x.track.kind === 'audio' : senderKind(c.pcObj, x) === 'audio'));
    if (snd && snd.dtmf && snd.dtmf.canInsertDTMF) type = JsSIP.C.DTMF_TRANSPORT.RFC2833;
  }
  try {
    s.sendDTMF(key, { transportType: type, duration: 120, interToneGap: 70 });
  } catch (e) {
    return false;
  }
  c.dtmf = (c.dtmf + key).slice(-24);
  c.dtmfTransport = type;
  render();
  return true;
}

/* ------------------------------------------------------------------ ring (WebAudio, optional) */

let audioCtx = null;
let ringTimer = null;

function unlockAudio() {
  try {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!audioCtx && AC) audioCtx = new AC();
    if (audioCtx && audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
  } catch (e) { audioCtx = null; }
}

function ringOnce() {
  if (!audioCtx || audioCtx.state !== 'running') return;
  const now = audioCtx.currentTime;
  const osc = audioCtx.createOscillator();
  const gain = audioCtx.createGain();
  osc.frequency.value = 425;
  gain.gain.setValueAtTime(0, now);
  gain.gain.linearRampToValueAtTime(0.12, now + 0.02);
  gain.gain.setValueAtTime(0.12, now + 0.98);
  gain.gain.linearRampToValueAtTime(0, now + 1.0);
  osc.connect(gain).connect(audioCtx.destination);
  osc.start(now);
  osc.stop(now + 1.05);
}

function startRing() {
  stopRing();
  ringOnce();
  ringTimer = setInterval(ringOnce, 4000);
}

function stopRing() {
  if (ringTimer) clearInterval(ringTimer);
  ringTimer = null;
}

/* ------------------------------------------------------------------ rooms */

let roomsData = [];
let roomsState = 'idle'; // idle | loading | loaded | failed
let roomsTimer = null;   // every 2 s while the page is in a room, else with the directory

async function loadRooms() {
  if (state.demo || !state.ext || !password) return;
  if (!roomsData.length) { roomsState = 'loading'; renderRooms(); }
  try {
    const r = await fetch('/phone/api/rooms', {
      headers: { Accept: 'application/json', Authorization: basicAuth(state.ext, password) },
      cache: 'no-store', credentials: 'omit',
    });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const j = await r.json();
    roomsData = (j && Array.isArray(j.rooms) ? j.rooms : []).map((x) => ({
      number: String(x.number || ''), name: String(x.name || ''), pin: x.pin === true,
      moderator: x.moderator === true, locked: x.locked === true, allMuted: x.all_muted === true,
      participants: (Array.isArray(x.participants) ? x.participants : []).map((p) => ({
        who: String(p.who || ''), opd: p.opd ? String(p.opd) : '', moderator: p.moderator === true,
        talking: p.talking === true, muted: p.muted === true,
        showing: (Array.isArray(p.showing) ? p.showing : []).map((w) => (w ? String(w) : null)),
      })),
    }));
    roomsState = 'loaded';
  } catch (e) {
    roomsState = 'failed';
  }
  renderRooms();
}

/** The room the page's call is in, if it is one. */
function currentRoom() {
  const c = state.call;
  if (!c || !['calling', 'ringing', 'confirmed'].includes(c.status)) return null;
  return roomsData.find((r) => r.number === c.peer) || null;
}

function pollRooms() {
  if (roomsTimer) clearInterval(roomsTimer);
  roomsTimer = setInterval(() => {
    if (state.loggedIn && document.visibilityState === 'visible' && currentRoom()) loadRooms();
  }, 2000);
}

async function roomAction(number, action) {
  clearError();
  try {
    const r = await fetch('/phone/api/rooms/' + encodeURIComponent(number), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: basicAuth(state.ext, password) },
      body: JSON.stringify(action), cache: 'no-store', credentials: 'omit',
    });
    if (!r.ok) throw new Error((await r.text()).trim() || 'HTTP ' + r.status);
  } catch (e) {
    showError('room_action_failed', { why: e.message });
  }
  loadRooms();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(testid, label, onClick, cls) {
  const b = el('button', 'btn btn-small ' + (cls || ''), label);
  b.type = 'button';
  b.setAttribute('data-testid', testid);
  b.addEventListener('click', onClick);
  return b;
}

function renderRooms() {
  const list = $('rooms-list');
  const note = $('rooms-note');
  if (!list) return;
  list.textContent = '';
  if (roomsState === 'loading' && !roomsData.length) { note.textContent = t('rooms_loading'); return; }
  if (roomsState === 'failed') { note.textContent = t('rooms_failed'); return; }
  note.textContent = roomsData.length ? '' : (roomsState === 'loaded' ? t('rooms_none') : '');
  const here = currentRoom();
  for (const r of roomsData) {
    const li = el('li', 'room' + (here === r ? ' room-here' : ''));
    li.setAttribute('data-testid', 'room-' + r.number);
    li.dataset.locked = String(r.locked);
    const head = el('div', 'room-head');
    const title = el('span', 'room-name', r.name);
    const num = el('span', 'entry-ext', r.number);
    head.append(title, ' ', num);
    if (r.pin) head.append(' ', el('span', 'badge', t('room_pin')));
    if (r.locked) head.append(' ', el('span', 'badge badge-warn', t('room_locked')));
    const count = el('span', 'room-count', t('room_people', { n: r.participants.length }));
    count.setAttribute('data-testid', 'room-count-' + r.number);
    head.append(' ', count);
    if (!here) {
      head.append(' ', button('room-join-' + r.number, t('room_join'), () => {
        $('dial-input').value = r.number;
        placeCall(false);
      }, 'btn-go'));
      head.append(' ', button('room-join-video-' + r.number, t('room_join_video'), () => {
        $('dial-input').value = r.number;
        placeCall(true, { slots: ROOM_SLOTS });
      }, 'btn-go'));
    }
    li.append(head);
    if (here === r || r.participants.length) {
      const ul = el('ul', 'room-people');
      ul.setAttribute('data-testid', 'room-participants-' + r.number);
      for (const p of r.participants) {
        const pi = el('li', 'participant' + (p.talking ? ' talking' : '') + (p.muted ? ' muted' : ''));
        pi.setAttribute('data-testid', 'room-participant-' + p.who);
        pi.dataset.talking = String(p.talking);
        pi.dataset.muted = String(p.muted);
        pi.append(el('span', 'participant-who', p.who + (p.who === state.ext ? ' ★' : '')));
        if (p.opd) pi.append(' ', el('span', 'opd-code', p.opd));
        if (p.moderator) pi.append(' ', el('span', 'badge', t('room_moderator')));
        if (p.talking) pi.append(' ', el('span', 'badge badge-go', t('room_talking')));
        if (p.muted) pi.append(' ', el('span', 'badge', t('room_muted')));
        if (r.moderator && p.who !== state.ext) {
          pi.append(' ', button('room-mute-' + p.who, p.muted ? t('room_unmute') : t('room_mute'),
            () => roomAction(r.number, { action: 'mute', extension: p.who, muted: !p.muted })));
          pi.append(' ', button('room-kick-' + p.who, t('room_kick'),
            () => roomAction(r.number, { action: 'kick', extension: p.who }), 'btn-stop'));
        }
        ul.append(pi);
      }
      if (!r.participants.length) ul.append(el('li', 'note', t('room_empty')));
      li.append(ul);
      if (r.moderator && r.participants.length) {
        const tools = el('div', 'room-tools');
        tools.append(button('room-mute-all-' + r.number, r.allMuted ? t('room_unmute_all') : t('room_mute_all'),
          () => roomAction(r.number, { action: 'mute', extension: null, muted: !r.allMuted })));
        tools.append(' ', button('room-lock-' + r.number, r.locked ? t('room_unlock') : t('room_lock'),
          () => roomAction(r.number, { action: 'lock', locked: !r.locked })));
        li.append(tools);
      }
    }
    list.append(li);
  }
  renderGrid();
}

/* ------------------------------------------------------------------ video rooms */

// A room call with video offers this many video lines: the camera's and two more to
// receive; the room fills them with the last talkers (its SFU) and the grid shows them.
const ROOM_SLOTS = 3;

/** Our extra receive-only video lines, added after JsSIP's own tracks (its `connecting`
 *  event comes between its addTrack calls and the offer). */
function addRoomSlots(pc, slots) {
  for (let k = 1; k < slots; k++) pc.addTransceiver('video', { direction: 'recvonly' });
}

/** The video transceivers of the call's connection, in m-line order. */
function videoTransceivers(pc) {
  return pc.getTransceivers().filter((x) => x.receiver && x.receiver.track && x.receiver.track.kind === 'video');
}

/** The grid of a room call: one tile per video line, labelled with whom the room shows on
 *  it, the talker's tile highlighted. */
function renderGrid() {
  const grid = $('room-grid');
  const c = state.call;
  const here = currentRoom();
  if (!grid) return;
  if (!c || !c.slots || !c.pcObj || !here) {
    grid.hidden = true;
    grid.textContent = '';
    return;
  }
  const me = here.participants.find((p) => p.who === state.ext);
  const showing = me ? me.showing : [];
  const talking = new Set(here.participants.filter((p) => p.talking).map((p) => p.who));
  const txs = videoTransceivers(c.pcObj);
  grid.hidden = false;
  txs.forEach((tx, k) => {
    let tile = grid.querySelector('[data-slot="' + k + '"]');
    if (!tile) {
      tile = el('figure', 'tile');
      tile.dataset.slot = String(k);
      tile.setAttribute('data-testid', 'room-video-' + k);
      const v = el('video');
      v.autoplay = true; v.playsInline = true; v.muted = true;
      v.srcObject = new MediaStream([tx.receiver.track]);
      v.play().catch(() => {});
      const cap = el('figcaption', 'tile-who');
      cap.setAttribute('data-testid', 'room-video-who-' + k);
      tile.append(v, cap);
      grid.append(tile);
    }
    const who = showing[k] || null;
    tile.dataset.who = who || '';
    tile.dataset.talking = String(!!who && talking.has(who));
    tile.classList.toggle('talking', !!who && talking.has(who));
    tile.querySelector('figcaption').textContent = who ? (who + ' ' + (directoryName(who) || '')).trim() : t('room_slot_empty');
  });
  $('remote-video').hidden = true;
  const sb = $('room-screen');
  if (sb) {
    sb.hidden = !c.videoOn;
    sb.textContent = c.screen ? t('room_screen_stop') : t('room_screen');
    sb.setAttribute('aria-pressed', String(!!c.screen));
  }
}

/** Screen sharing: the camera's sender carries the screen instead (no re-INVITE), and the
 *  camera again when sharing stops. */
async function toggleScreen() {
  const c = state.call;
  if (!c || !c.pcObj || !c.videoOn) return;
  const sender = c.pcObj.getSenders().find((x) => x.track && x.track.kind === 'video');
  if (!sender) return;
  clearError();
  if (c.screen) {
    const screen = c.screen;
    c.screen = null;
    await sender.replaceTrack(c.camera || null).catch(() => {});
    screen.getTracks().forEach((x) => x.stop());
    renderGrid();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (e) {
    showError('err_screen', { why: e.message || e.name });
    return;
  }
  const track = stream.getVideoTracks()[0];
  c.camera = sender.track;
  c.screen = stream;
  await sender.replaceTrack(track);
  track.addEventListener('ended', () => { if (c.screen === stream) toggleScreen(); });
  renderGrid();
}

/* ------------------------------------------------------------------ directory */

function basicAuth(user, pw) {
  const bytes = new TextEncoder().encode(user + ':' + pw);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return 'Basic ' + btoa(bin);
}

async function loadDirectory() {
  state.directory = 'loading';
  renderDirectory();
  const headers = { Accept: 'application/json' };
  if (!state.demo && state.ext && password) headers.Authorization = basicAuth(state.ext, password);
  try {
    const r = await fetch('/phone/api/directory', { headers, cache: 'no-store', credentials: 'omit' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const j = await r.json();
    directoryData = parseDirectory(j);
    state.directory = 'loaded';
  } catch (e) {
    state.directory = 'failed';
  }
  renderDirectory();
}

function parseDirectory(j) {
  const out = [];
  const opds = j && Array.isArray(j.opds) ? j.opds : [];
  for (const o of opds) {
    if (!o || typeof o !== 'object') continue;
    const exts = Array.isArray(o.extensions) ? o.extensions : [];
    out.push({
      code: String(o.code || ''),
      name: String(o.name || o.code || ''),
      extensions: exts.filter((x) => x && x.ext !== undefined && x.ext !== null).map((x) => ({
        ext: String(x.ext), name: String(x.name || ''), online: x.online === true,
      })),
    });
  }
  return out;
}

function directoryName(number) {
  for (const o of directoryData) for (const x of o.extensions) if (x.ext === number && x.name) return x.name;
  return null;
}

function renderDirectory() {
  const list = $('directory-list');
  const note = $('directory-note');
  list.textContent = '';
  if (state.directory === 'loading' && !directoryData.length) { note.textContent = t('directory_loading'); return; }
  if (state.directory === 'failed') { note.textContent = t('directory_failed'); return; }
  const needle = $('directory-search').value.trim().toLowerCase();
  let shown = 0;
  for (const o of directoryData) {
    const opdMatch = needle && (o.name.toLowerCase().includes(needle) || o.code.toLowerCase().includes(needle));
    const items = o.extensions.filter((x) => !needle || opdMatch || x.ext.toLowerCase().includes(needle) || x.name.toLowerCase().includes(needle));
    if (!items.length) continue;
    const group = document.createElement('div');
    group.className = 'opd';
    group.dataset.testid = 'directory-opd-' + o.code;
    group.setAttribute('data-testid', 'directory-opd-' + o.code);
    const h = document.createElement('h3');
    h.textContent = o.name;
    if (o.code && o.code !== o.name) {
      const code = document.createElement('span');
      code.className = 'opd-code';
      code.textContent = o.code;
      h.append(' ', code);
    }
    group.append(h);
    const ul = document.createElement('ul');
    for (const x of items) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'entry';
      b.setAttribute('data-testid', 'directory-entry-' + x.ext);
      b.dataset.ext = x.ext;
      b.setAttribute('aria-label', t('call_this', { ext: x.ext }) + (x.name ? ' (' + x.name + ')' : '') + ', ' + (x.online ? t('online') : t('offline')));
      const dot = document.createElement('span');
      dot.className = 'presence ' + (x.online ? 'on' : 'off');
      dot.title = x.online ? t('online') : t('offline');
      const name = document.createElement('span');
      name.className = 'entry-name';
      name.textContent = x.name || x.ext;
      const num = document.createElement('span');
      num.className = 'entry-ext';
      num.textContent = x.ext;
      b.append(dot, name, num);
      li.append(b);
      ul.append(li);
      shown++;
    }
    group.append(ul);
    list.append(group);
  }
  note.textContent = shown ? t('directory_count', { n: shown }) : (state.directory === 'loaded' ? t('directory_empty') : '');
}

/* ------------------------------------------------------------------ history */

function readHistory() {
  if (!state.ext) return [];
  try {
    const v = JSON.parse(load(KEY.history(state.ext)) || '[]');
    return Array.isArray(v) ? v : [];
  } catch (e) {
    return [];
  }
}

function addHistory(c, result) {
  if (!state.ext || state.demo) return;
  const h = readHistory();
  h.unshift({
    direction: c.direction === 'incoming' ? 'in' : 'out',
    number: c.peer || '',
    name: c.peerName || null,
    time: new Date(c.t_start).toISOString(),
    duration: c.t_confirmed && c.t_ended ? Math.max(0, Math.round((c.t_ended - c.t_confirmed) / 1000)) : 0,
    result,
    video: !!c.video,
  });
  store(KEY.history(state.ext), JSON.stringify(h.slice(0, HISTORY_MAX)));
  renderHistory();
}

function fmtDuration(sec) {
  const m = Math.floor(sec / 60);
  const s = sec % 60;
  const h = Math.floor(m / 60);
  const mm = String(m % 60).padStart(2, '0');
  const ss = String(s).padStart(2, '0');
  return h ? h + ':' + mm + ':' + ss : mm + ':' + ss;
}

function renderHistory() {
  const list = $('history-list');
  list.textContent = '';
  const h = state.demo ? demoHistory() : readHistory();
  $('history-empty').hidden = h.length > 0;
  const locale = state.lang === 'id' ? 'id-ID' : 'en-GB';
  for (const e of h) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'history-entry result-' + e.result;
    b.setAttribute('data-testid', 'history-entry');
    b.dataset.number = e.number;
    b.dataset.direction = e.direction;
    b.dataset.result = e.result;
    const dir = document.createElement('span');
    dir.className = 'dir dir-' + e.direction;
    dir.textContent = e.direction === 'in' ? '↙' : '↗';
    dir.title = e.direction === 'in' ? t('dir_in') : t('dir_out');
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = e.name ? e.name + ' · ' + e.number : e.number;
    const meta = document.createElement('span');
    meta.className = 'meta';
    let when = '';
    try { when = new Date(e.time).toLocaleString(locale, { dateStyle: 'short', timeStyle: 'short' }); } catch (err) { when = e.time; }
    const dirWord = e.direction === 'in' ? t('dir_in') : t('dir_out');
    meta.textContent = [dirWord, when, t('result_' + e.result), e.duration ? fmtDuration(e.duration) : ''].filter(Boolean).join(' · ');
    b.append(dir, who, meta);
    li.append(b);
    list.append(li);
  }
}

/* ------------------------------------------------------------------ rendering */

function render() {
  renderRegStatus();
  renderCall();
  renderRooms();
}

function renderRegStatus() {
  const el = $('reg-status');
  let key = 'reg_idle';
  let st = state.reg;
  if (state.demo) { key = 'reg_demo'; st = 'demo'; }
  else if (state.reg === 'registered' && state.ws === 'disconnected') { key = 'reg_disconnected'; st = 'disconnected'; }
  else if (state.reg === 'registered') key = 'reg_registered';
  else if (state.reg === 'connecting') key = 'reg_connecting';
  else if (state.reg === 'failed') key = 'reg_failed';
  else if (state.loggedIn && state.ws === 'disconnected') { key = 'reg_disconnected'; st = 'disconnected'; }
  el.textContent = t(key, { ext: state.ext || '' });
  el.dataset.state = st;
}

function callTime(c) {
  const from = c.t_confirmed || c.t_start;
  return fmtDuration(Math.max(0, Math.floor((Date.now() - from) / 1000)));
}

function peerLabel(c) {
  if (!c.peer) return t('caller_unknown');
  return c.peerName && c.peerName !== c.peer ? c.peerName + ' (' + c.peer + ')' : c.peer;
}

function renderCall() {
  const c = state.call;
  const st = $('call-status');
  const live = c && (c.status !== 'ended' && c.status !== 'failed');
  let text;
  if (!c) text = state.loggedIn || state.demo ? t('status_ready') : '';
  else if (c.status === 'media') text = t(c.video ? 'status_media_video' : 'status_media');
  else if (c.status === 'calling') text = t('status_calling');
  else if (c.status === 'ringing') text = t('status_ringing');
  else if (c.status === 'incoming') text = t('status_incoming', { peer: peerLabel(c) });
  else if (c.status === 'answering') text = t('status_answering');
  else if (c.status === 'confirmed') {
    if (c.held) text = t('status_held', { time: callTime(c) });
    else if (c.remoteHeld) text = t('status_remote_held', { time: callTime(c) });
    else text = t('status_connected', { time: callTime(c) });
  } else if (c.status === 'ended') text = t('status_ended');
  else text = t('status_failed');
  st.textContent = text;
  st.dataset.state = c ? (c.status === 'confirmed' && c.held ? 'held' : c.status) : 'idle';

  const ringing = !!(c && c.status === 'incoming');
  $('ring-panel').hidden = !ringing;
  if (ringing) {
    $('incoming-caller').textContent = peerLabel(c);
    $('ring-panel').querySelector('.ring-title').textContent = t(c.video ? 'incoming_video' : 'incoming_call');
    $('call-answer-video').hidden = !c.video;
  }
  const inCall = !!(live && !ringing);
  $('call-panel').hidden = !inCall;
  if (inCall) {
    $('call-peer').textContent = peerLabel(c);
    const up = c.status === 'confirmed';
    setToggle('call-mute', c.muted, c.muted ? 'unmute' : 'mute', !up);
    setToggle('call-hold', c.held, c.held ? 'unhold' : 'hold', !up);
    setToggle('video-toggle', c.videoOn, c.videoOn ? 'video_off' : 'video_on', !up);
    $('dtmf-display').textContent = c.dtmf ? t('dtmf_sent', { digits: c.dtmf }) : '';
  }
  $('dial-call').disabled = !!live;
  $('dial-video').disabled = !!live;
  document.body.classList.toggle('in-call', !!live);
  if (live && !ticker) ticker = setInterval(renderCall, 1000);
  if (!live && ticker) { clearInterval(ticker); ticker = null; }
}

function setToggle(id, pressed, key, disabled) {
  const b = $(id);
  b.setAttribute('aria-pressed', pressed ? 'true' : 'false');
  b.textContent = t(key);
  b.dataset.i18n = key;
  b.disabled = !!disabled;
}

/* ------------------------------------------------------------------ demo (no SIP) */

function demoHistory() {
  const now = Date.now();
  return [
    { direction: 'in', number: '1001', name: 'Budi', time: new Date(now - 600e3).toISOString(), duration: 74, result: 'answered' },
    { direction: 'out', number: '2002', name: 'Sari', time: new Date(now - 3600e3).toISOString(), duration: 0, result: 'busy' },
    { direction: 'in', number: '3003', name: null, time: new Date(now - 86400e3).toISOString(), duration: 0, result: 'missed' },
  ];
}

function startDemo() {
  state.ext = 'demo';
  state.reg = 'demo';
  $('demo-banner').hidden = false;
  document.body.classList.add('demo');
  showMain();
  loadDirectory();
}

/* ------------------------------------------------------------------ wiring */

function onKey(key) {
  if (sendDtmf(key)) return;
  const input = $('dial-input');
  input.value += key;
  input.focus();
}

function wire() {
  $('lang-select').addEventListener('change', (e) => {
    const v = e.target.value;
    if (!TEXT[v]) return;
    state.lang = v;
    store(KEY.lang, v);
    applyLanguage();
  });
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    login($('login-ext').value.trim(), $('login-password').value, $('login-remember').checked);
  });
  $('logout').addEventListener('click', () => { if (state.demo) { location.search = ''; return; } logout(); });
  $('dial-form').addEventListener('submit', (e) => { e.preventDefault(); placeCall(false); });
  $('dial-video').addEventListener('click', () => placeCall(true));
  $('dial-backspace').addEventListener('click', () => { const i = $('dial-input'); i.value = i.value.slice(0, -1); i.focus(); });
  for (const b of document.querySelectorAll('.dialpad .key')) b.addEventListener('click', () => onKey(b.dataset.key));
  $('call-answer').addEventListener('click', () => answerCall(false));
  $('call-answer-video').addEventListener('click', () => answerCall(true));
  $('call-decline').addEventListener('click', declineCall);
  $('call-hangup').addEventListener('click', hangupCall);
  $('call-mute').addEventListener('click', toggleMute);
  $('call-hold').addEventListener('click', toggleHold);
  $('video-toggle').addEventListener('click', toggleVideo);
  $('room-screen').addEventListener('click', toggleScreen);
  $('directory-search').addEventListener('input', renderDirectory);
  $('directory-refresh').addEventListener('click', loadDirectory);
  $('rooms-refresh').addEventListener('click', loadRooms);
  $('directory-list').addEventListener('click', (e) => {
    const b = e.target.closest('button.entry');
    if (!b) return;
    $('dial-input').value = b.dataset.ext;
    $('dial-input').focus();
  });
  $('history-list').addEventListener('click', (e) => {
    const b = e.target.closest('button.history-entry');
    if (!b) return;
    $('dial-input').value = b.dataset.number;
    $('dial-input').focus();
  });
  $('history-clear').addEventListener('click', () => {
    if (state.ext && !state.demo) store(KEY.history(state.ext), null);
    renderHistory();
  });
  window.addEventListener('beforeunload', () => { try { if (ua) ua.stop(); } catch (e) { /* closing */ } });
}

const api = {
  ready: false,
  version: JsSIP.version,
  state,
  lastStats: null,
  stats,
  languages: LANGS,
  /** The current call's RTCPeerConnection (tests measure with its getStats), or null. */
  peerConnection: () => (session && session.connection) || null,
};
window.tambunPhone = api;

function main() {
  wire();
  applyLanguage();
  showLogin();
  if (opts.demo) { startDemo(); api.ready = true; return; }
  const saved = (() => { try { return JSON.parse(load(KEY.remember) || 'null'); } catch (e) { return null; } })();
  fetchConfig().then(() => {
    api.ready = true;
    if (saved && saved.ext && saved.password) {
      $('login-ext').value = saved.ext;
      $('login-remember').checked = true;
      login(String(saved.ext), String(saved.password), true);
    }
  });
}

main();
