//! Real peers on both sides of the WebRTC gateway: the softphone page in headless Chromium
//! ([`BrowserAgent`]) and baresip desk phones, through one switch with the web listener and its
//! own relay range. What the browser's getStats says, what baresip counted at the hangup and
//! what the call record holds must agree: audio both ways in G.711 (no transcoding), DTLS in
//! both roles, hold and resume, video browser to browser, baresip to baresip and baresip to
//! browser, the login error sentence, and a call that survives a flood of DTLS and STUN
//! garbage at the browser leg's port.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::baresip::{account, Baresip};
use crate::common::browser::BrowserAgent;
use crate::common::calls::{assert_cdr, one_cdr};
use crate::common::media::{
    admin_get_text, counter, live_calls, rtp_range, stream_counters, write_tone_wav, RANGE_LEN,
};
use crate::common::{Switch, SwitchOptions};

/// The browser's extension and the desk phones'.
const BROWSER: (&str, &str, &str) = ("1000", "setda", "rahasia1000");
const DESK: (&str, &str, &str) = ("1001", "setda", "rahasia1001");
const DESK2: (&str, &str, &str) = ("1002", "setda", "rahasia1002");
const BROWSER2: (&str, &str, &str) = ("1003", "setda", "rahasia1003");

/// A switch with the web listener (page, WSS), media through the relay on its own range, and
/// `extensions`.
fn web_media_switch(extensions: &[(&str, &str, &str)]) -> Switch {
    let range = rtp_range(RANGE_LEN);
    let mut switch = Switch::create(SwitchOptions {
        websocket: true,
        extra_args: vec!["--rtp-ports".into(), range],
        ..SwitchOptions::default()
    });
    for (number, opd, password) in extensions {
        switch.add_ext(number, opd, password);
    }
    switch.launch();
    switch
}

/// A registered baresip desk phone for `ext`: PCMU at 20 ms from a 440 Hz tone, RTP totals
/// printed at the hangup, auto-answer; with `video` also VP8 from baresip's `fakevideo`.
fn desk_phone(switch: &Switch, who: (&str, &str, &str), video: bool) -> Baresip {
    desk_phone_for(switch, who, video, 30)
}

/// [`desk_phone`] whose tone lasts `secs` (baresip hangs up when its audio file ends).
fn desk_phone_for(
    switch: &Switch,
    (ext, _, password): (&str, &str, &str),
    video: bool,
    secs: u32,
) -> Baresip {
    let tone = switch.dir().join(format!("tone-{ext}.wav"));
    write_tone_wav(&tone, secs);
    let mut config = format!(
        "audio_player\t\talsa,null\n\
         audio_alert\t\talsa,null\n\
         audio_source\t\taufile,{}\n\
         audio_buffer\t\t20-160\n\
         rtp_stats\t\tyes\n\
         module\t\t\taufile.so\n\
         module\t\t\talsa.so\n",
        tone.display()
    );
    let mut params = ";answermode=auto;audio_codecs=PCMU;ptime=20".to_owned();
    if video {
        config.push_str(
            "module\t\t\tvp8.so\n\
             module\t\t\tfakevideo.so\n\
             video_source\t\tfakevideo,nil\n\
             video_display\t\tfakevideo,nil\n\
             video_size\t\t320x240\n\
             video_fps\t\t15\n\
             video_bitrate\t\t300000\n",
        );
        params.push_str(";video_codecs=VP8");
    }
    let account = account(switch, ext, password, &params);
    Baresip::start_registered(switch.dir(), ext, &account, Some(&config))
}

/// A number field of a stats summary (0 when absent or null).
fn num(stats: &Value, key: &str) -> f64 {
    stats.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// A number field of the video part of a stats summary.
fn video_num(stats: &Value, key: &str) -> f64 {
    stats.get("video").map(|v| num(v, key)).unwrap_or_default()
}

fn text(stats: &Value, key: &str) -> String {
    stats
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Polls the page's stats until `cond` holds or `within` passes; the last stats and whether
/// it held.
fn stats_until(
    browser: &mut BrowserAgent,
    page: u64,
    within: Duration,
    cond: impl Fn(&Value) -> bool,
) -> (Value, bool) {
    let mut last = Value::Null;
    let held = Switch::eventually(within, || {
        last = browser.stats(page);
        cond(&last)
    });
    (last, held)
}

/// Logs a browser in, dials `number` and waits until the call is up (media connected, status
/// "Terhubung").
fn browser_dials(browser: &mut BrowserAgent, switch: &Switch, number: &str, video: bool) -> u64 {
    let page = browser.open(switch);
    browser.login_ok(page, BROWSER.0, BROWSER.2);
    browser.call(page, number, video);
    browser.wait_media(page);
    if let Err(e) = browser.wait_status(page, "^Terhubung", Duration::from_secs(5)) {
        panic!("the browser's call never showed Terhubung: {e}");
    }
    page
}

/// Logs a browser in, lets `desk` dial it and answers (with the camera when `video`); waits
/// until the media is connected.
fn desk_dials_browser(
    browser: &mut BrowserAgent,
    switch: &Switch,
    desk: &Baresip,
    video: bool,
) -> u64 {
    let page = browser.open(switch);
    browser.login_ok(page, BROWSER.0, BROWSER.2);
    desk.command_data("dial", &format!("sip:{}@{}", BROWSER.0, switch.sip));
    browser.answer(page, video);
    browser.wait_media(page);
    page
}

/// baresip's end-of-call RTP totals of one media kind (`audio` or `video`): (transmitted,
/// received) packets, from the `packets: TX RX` line under the `KIND  Transmit: Receive:`
/// header its `rtp_stats` print at the hangup; waits up to 5 s for them.
fn baresip_totals_of(phone: &Baresip, kind: &str) -> (u64, u64) {
    let mut totals = None;
    Switch::eventually(Duration::from_secs(5), || {
        let log = phone.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let header = lines
            .iter()
            .rposition(|l| l.starts_with(kind) && l.contains("Transmit:"));
        totals = header.and_then(|h| {
            let rest = lines.get(h + 1)?.strip_prefix("packets:")?;
            let mut n = rest.split_whitespace().map(|v| v.parse::<u64>().ok());
            Some((n.next()??, n.next()??))
        });
        totals.is_some()
    });
    totals.unwrap_or_else(|| {
        panic!(
            "baresip printed no {kind} RTP totals:\n{}",
            phone.log_text()
        )
    })
}

/// baresip's end-of-call audio RTP totals (transmitted, received).
fn baresip_totals(phone: &Baresip) -> (u64, u64) {
    baresip_totals_of(phone, "audio")
}

/// The call record: answered, with at least `min` packets each way in its media totals.
fn assert_answered_cdr(switch: &Switch, caller: &str, callee: &str, min: u64) -> Value {
    let row = one_cdr(switch);
    assert_cdr(
        &row,
        &[
            ("caller", caller),
            ("callee", callee),
            ("disposition", "answered"),
        ],
    );
    let media = row
        .get("media")
        .unwrap_or_else(|| panic!("no media totals in {row:#}"));
    for dir in ["packets_a2b", "packets_b2a"] {
        let n = media.get(dir).and_then(Value::as_u64).unwrap_or(0);
        assert!(n >= min, "{dir} = {n} in the call record: {row:#}");
    }
    row
}

/// The audio checks of a browser ↔ desk phone call: RTP both ways (≥ 150 packets), a tone
/// that is heard, PCMU both ways, DTLS connected in `role`.
fn assert_browser_audio(stats: &Value, role: &str) {
    assert!(
        num(stats, "packetsReceived") >= 150.0 && num(stats, "packetsSent") >= 150.0,
        "the browser's RTP: {stats:#}"
    );
    assert!(
        num(stats, "totalAudioEnergy") > 0.0 || num(stats, "audioLevel") > 0.0,
        "the browser hears silence: {stats:#}"
    );
    for key in ["codecSend", "codecRecv"] {
        assert!(
            text(stats, key).starts_with("PCMU/8000"),
            "{key} is not PCMU (transcoding or a wrong answer): {stats:#}"
        );
    }
    assert_eq!(text(stats, "dtlsState"), "connected", "{stats:#}");
    assert_eq!(
        text(stats, "dtlsRole"),
        role,
        "the browser's DTLS role: {stats:#}"
    );
}

/// Fails the test when the page's call is no longer confirmed (with its cause and the SDP
/// the page last applied).
fn assert_call_up(browser: &mut BrowserAgent, page: u64, when: &str) {
    std::thread::sleep(Duration::from_millis(300));
    let state = browser.state(page);
    let call = &state["call"];
    assert_eq!(
        call["status"].as_str(),
        Some("confirmed"),
        "the call is gone {when}: status {}, cause {}, SDP the page applied: {}",
        call["status"],
        call["cause"],
        call["sdp"]
    );
}

/// `tambun calls --json` as text, for failure messages.
fn calls_json(switch: &Switch) -> String {
    switch.cli_ok(&["calls", "--json"])
}

/// The `a=setup:` value of an SDP.
fn setup_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=setup:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn browser_calls_a_baresip_desk_phone() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, DESK]);
    let mut desk = desk_phone(&switch, DESK, false);
    let mut browser = BrowserAgent::start(switch.dir(), "a");
    let page = browser_dials(&mut browser, &switch, DESK.0, false);

    // ~4 s of audio each way (50 packets/s)
    let (stats, held) = stats_until(&mut browser, page, Duration::from_secs(12), |s| {
        num(s, "packetsReceived") >= 200.0 && num(s, "packetsSent") >= 200.0
    });
    assert!(
        held,
        "the browser's RTP never reached 200 packets each way: {stats:#}\nrelay: {}\n{}",
        calls_json(&switch),
        desk.log_text()
    );
    // The browser offered; the switch answered `a=setup:active`: the browser is the DTLS
    // server.
    let (_, remote) = browser.sdp(page);
    assert_eq!(
        setup_of(&remote),
        "active",
        "the switch's answer:\n{remote}"
    );
    assert_browser_audio(&stats, "server");
    eprintln!("browser -> baresip: {stats}");

    browser.hangup(page);
    let (tx, rx) = baresip_totals(&desk);
    assert!(
        tx >= 150 && rx >= 150,
        "baresip sent {tx} and received {rx} RTP packets"
    );
    Switch::eventually(Duration::from_secs(5), || !desk.has_established_call());
    assert_answered_cdr(&switch, BROWSER.0, DESK.0, 150);
    desk.stop();
    eprintln!("browser_calls_a_baresip_desk_phone: {:?}", t0.elapsed());
}

#[test]
fn baresip_calls_the_browser() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, DESK]);
    let mut desk = desk_phone(&switch, DESK, false);
    let mut browser = BrowserAgent::start(switch.dir(), "b");
    let page = desk_dials_browser(&mut browser, &switch, &desk, false);
    let (stats, held) = stats_until(&mut browser, page, Duration::from_secs(12), |s| {
        num(s, "packetsReceived") >= 200.0 && num(s, "packetsSent") >= 200.0
    });
    assert!(
        held,
        "the browser's RTP never reached 200 packets each way: {stats:#}"
    );
    assert!(
        desk.has_established_call(),
        "baresip lists no established call"
    );
    // The switch offered `actpass` to the browser; Chromium answers `active`: DTLS client.
    let (local, remote) = browser.sdp(page);
    assert_eq!(
        setup_of(&remote),
        "actpass",
        "the switch's offer:\n{remote}"
    );
    assert_eq!(setup_of(&local), "active", "the browser's answer:\n{local}");
    assert_browser_audio(&stats, "client");
    eprintln!("baresip -> browser: {stats}");

    desk.command_data("hangup", "");
    if let Err(e) = browser.wait_status(page, "Panggilan berakhir", Duration::from_secs(5)) {
        panic!("the browser did not see baresip's BYE: {e}");
    }
    let (tx, rx) = baresip_totals(&desk);
    assert!(
        tx >= 150 && rx >= 150,
        "baresip sent {tx} and received {rx} RTP packets"
    );
    assert_answered_cdr(&switch, DESK.0, BROWSER.0, 150);
    desk.stop();
    eprintln!("baresip_calls_the_browser: {:?}", t0.elapsed());
}

#[test]
fn browser_hold_and_resume() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, DESK]);
    let mut desk = desk_phone(&switch, DESK, false);
    let mut browser = BrowserAgent::start(switch.dir(), "h");
    // (the desk phone dials: a browser's offer breaks the phone's leg, see
    // browser_calls_a_baresip_desk_phone)
    let page = desk_dials_browser(&mut browser, &switch, &desk, false);
    let (before, held) = stats_until(&mut browser, page, Duration::from_secs(8), |s| {
        num(s, "packetsReceived") >= 100.0
    });
    assert!(held, "no audio before the hold: {before:#}");

    let status = browser.hold(page);
    assert_call_up(&mut browser, page, "after the hold");
    assert!(status.starts_with("Ditahan"), "status after hold: {status}");
    // On hold the page sends `a=sendonly`; baresip answers `recvonly` and stops sending.
    std::thread::sleep(Duration::from_millis(500));
    let hold_start = browser.stats(page);
    std::thread::sleep(Duration::from_millis(1500));
    let hold_end = browser.stats(page);
    let during = num(&hold_end, "packetsReceived") - num(&hold_start, "packetsReceived");
    let listed = desk.command_data("listcalls", "");

    let status = browser.unhold(page);
    assert_call_up(&mut browser, page, "after the resume");
    assert!(
        status.starts_with("Terhubung"),
        "status after resume: {status}"
    );
    let base = num(&browser.stats(page), "packetsReceived");
    let (after, grew) = stats_until(&mut browser, page, Duration::from_secs(8), |s| {
        num(s, "packetsReceived") >= base + 100.0
    });
    assert!(
        grew,
        "packets did not grow again after the resume (from {base}): {after:#}\n\
         baresip during the hold: {listed}"
    );
    assert!(
        during <= 10.0,
        "the desk phone kept sending during the hold: {during} packets in 1.5 s \
         (baresip: {listed})"
    );
    assert_eq!(text(&after, "dtlsState"), "connected", "{after:#}");
    browser.hangup(page);
    let (tx, rx) = baresip_totals(&desk);
    assert!(tx >= 150 && rx >= 150, "baresip sent {tx}, received {rx}");
    desk.stop();
    eprintln!(
        "browser_hold_and_resume: {during} packets during the hold; {:?}",
        t0.elapsed()
    );
}

#[test]
fn browser_to_browser_video() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, BROWSER2]);
    let mut browser = BrowserAgent::start(switch.dir(), "v");
    let a = browser.open(&switch);
    browser.login_ok(a, BROWSER.0, BROWSER.2);
    let b = browser.open(&switch);
    browser.login_ok(b, BROWSER2.0, BROWSER2.2);

    browser.call(a, BROWSER2.0, true);
    browser.answer(b, true);
    browser.wait_media(a);
    browser.wait_media(b);
    let mut first = Vec::new();
    for page in [a, b] {
        let (s, ok) = stats_until(&mut browser, page, Duration::from_secs(10), |s| {
            video_num(s, "framesDecoded") > 20.0
        });
        assert!(ok, "page {page} decoded no video: {s:#}");
        first.push(video_num(&s, "framesDecoded"));
    }
    for (page, was) in [(a, first[0]), (b, first[1])] {
        let (s, ok) = stats_until(&mut browser, page, Duration::from_secs(5), |s| {
            video_num(s, "framesDecoded") >= was + 20.0
        });
        assert!(ok, "page {page}'s decoded frames stopped at {was}: {s:#}");
        eprintln!("page {page}: {}", s["video"]);
    }
    browser.hangup(a);
    if let Err(e) = browser.wait_status(b, "Panggilan berakhir", Duration::from_secs(5)) {
        panic!("B did not see the hangup: {e}");
    }
    eprintln!("browser_to_browser_video: {:?}", t0.elapsed());
}

/// An audio call between two browsers; A turns its camera on (a re-INVITE that adds an
/// m=video line: the session grows in place and the new stream joins both browsers' BUNDLE
/// transports), then B (its video transceiver was recvonly: a second re-offer). Video is
/// decoded both ways and the audio goes on.
#[test]
fn browsers_turn_video_on_in_an_audio_call() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, BROWSER2]);
    let mut browser = BrowserAgent::start(switch.dir(), "up");
    let a = browser.open(&switch);
    browser.login_ok(a, BROWSER.0, BROWSER.2);
    let b = browser.open(&switch);
    browser.login_ok(b, BROWSER2.0, BROWSER2.2);

    browser.call(a, BROWSER2.0, false);
    browser.answer(b, false);
    browser.wait_media(a);
    browser.wait_media(b);
    let on = browser.video_toggle(a);
    assert_eq!(
        on["videoOn"],
        Value::Bool(true),
        "A's video did not turn on: {on}"
    );
    assert_eq!(
        on["renegotiated"], 1,
        "turning video on sent no re-INVITE: {on}"
    );
    let (s, ok) = stats_until(&mut browser, b, Duration::from_secs(10), |s| {
        video_num(s, "framesDecoded") > 15.0
    });
    assert!(
        ok,
        "B decoded no video after A turned it on: {s:#}\n{}",
        browser.log_text()
    );
    browser.video_toggle(b);
    let (s, ok) = stats_until(&mut browser, a, Duration::from_secs(10), |s| {
        video_num(s, "framesDecoded") > 15.0
    });
    assert!(
        ok,
        "A decoded no video after B turned it on: {s:#}\n{}",
        browser.log_text()
    );
    assert_call_up(&mut browser, a, "after video was turned on");
    let audio_was = num(&s, "packetsReceived");
    let (s, ok) = stats_until(&mut browser, a, Duration::from_secs(5), |s| {
        num(s, "packetsReceived") > audio_was + 50.0
    });
    assert!(ok, "A's audio stopped after video was added: {s:#}");
    let calls = calls_json(&switch);
    browser.hangup(a);
    if let Err(e) = browser.wait_status(b, "Panggilan berakhir", Duration::from_secs(5)) {
        panic!("B did not see the hangup: {e}");
    }
    eprintln!(
        "browsers_turn_video_on_in_an_audio_call: A {}; calls {calls}; {:?}",
        s["video"],
        t0.elapsed()
    );
}

/// A browser in an audio call with a baresip video phone turns its camera on: the re-INVITE
/// reaches baresip as plain RTP/AVP with a second m-line on new relay ports, baresip answers
/// with video, and the browser decodes baresip's VP8.
#[test]
fn browser_turns_video_on_with_a_baresip_video_phone() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, DESK]);
    let mut desk = desk_phone(&switch, DESK, true);
    let mut browser = BrowserAgent::start(switch.dir(), "uv");
    let page = browser_dials(&mut browser, &switch, DESK.0, false);
    let on = browser.video_toggle(page);
    assert_eq!(
        on["renegotiated"], 1,
        "turning video on sent no re-INVITE: {on}"
    );
    let (stats, decoded) = stats_until(&mut browser, page, Duration::from_secs(10), |s| {
        video_num(s, "framesDecoded") > 15.0
    });
    assert!(
        decoded,
        "the browser decoded no video from baresip after turning video on: {stats:#}\n{}",
        browser.log_text()
    );
    assert_call_up(&mut browser, page, "after video was turned on");
    browser.hangup(page);
    let (tx, rx) = baresip_totals_of(&desk, "video");
    desk.stop();
    assert!(
        tx >= 15 && rx >= 15,
        "baresip's video after the re-INVITE: sent {tx}, received {rx}"
    );
    eprintln!(
        "browser video on with baresip: {}; baresip video tx {tx} rx {rx}; {:?}",
        stats["video"],
        t0.elapsed()
    );
}

#[test]
fn a_wrong_password_shows_the_sentence() {
    let t0 = Instant::now();
    let mut switch = Switch::create(SwitchOptions {
        websocket: true,
        extra_args: vec!["--no-media".into()],
        ..SwitchOptions::default()
    });
    switch.add_ext(BROWSER.0, BROWSER.1, BROWSER.2);
    switch.launch();
    let mut browser = BrowserAgent::start(switch.dir(), "p");
    let page = browser.open(&switch);
    let r = browser.login(page, BROWSER.0, "salah");
    assert_eq!(
        r["ok"],
        Value::Bool(false),
        "a wrong password logged in: {r}"
    );
    let sentence = "Nomor ekstensi atau kata sandi salah.";
    assert_eq!(r["error"].as_str(), Some(sentence), "{r}");
    let shown = browser.error_text(page);
    assert_eq!(shown.as_deref(), Some(sentence), "the page shows {shown:?}");
    assert!(switch.regs().is_empty(), "{:?}", switch.regs());
    eprintln!(
        "a_wrong_password_shows_the_sentence: {r}; {:?}",
        t0.elapsed()
    );
}

#[test]
fn baresip_video_to_baresip_video_through_the_relay() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[DESK, DESK2]);
    let mut callee = desk_phone(&switch, DESK2, true);
    let mut caller = desk_phone(&switch, DESK, true);
    caller.dial_established(&format!("sip:{}@{}", DESK2.0, switch.sip), &callee);

    let sample = || {
        let a = stream_counters(&switch, 1, "caller->callee");
        let b = stream_counters(&switch, 1, "callee->caller");
        (counter(&a, "packets"), counter(&b, "packets"))
    };
    let mut first = (0, 0);
    let started = Switch::eventually(Duration::from_secs(8), || {
        first = sample();
        first.0 >= 20 && first.1 >= 20
    });
    assert!(
        started,
        "no video RTP through the relay on stream 1: {first:?}\n{:#?}",
        live_calls(&switch)
    );
    let mut later = first;
    let grew = Switch::eventually(Duration::from_secs(5), || {
        later = sample();
        later.0 >= first.0 + 20 && later.1 >= first.1 + 20
    });
    assert!(grew, "video stopped: {first:?} then {later:?}");
    let audio = (
        counter(&stream_counters(&switch, 0, "caller->callee"), "packets"),
        counter(&stream_counters(&switch, 0, "callee->caller"), "packets"),
    );
    assert!(
        audio.0 > 0 && audio.1 > 0,
        "no audio beside the video: {audio:?}"
    );
    caller.command_data("hangup", "");
    // each phone counted the other's video (the relay forwarded it, nothing went around)
    let (a_tx, a_rx) = baresip_totals_of(&caller, "video");
    let (b_tx, b_rx) = baresip_totals_of(&callee, "video");
    assert!(
        a_tx >= 40 && a_rx >= 40 && b_tx >= 40 && b_rx >= 40,
        "baresip video totals: caller tx {a_tx} rx {a_rx}, callee tx {b_tx} rx {b_rx}"
    );
    let row = assert_answered_cdr(&switch, DESK.0, DESK2.0, 50);
    caller.stop();
    callee.stop();
    eprintln!(
        "baresip video: relay stream 1 {later:?} packets, audio {audio:?}; baresip video \
         caller {a_tx}/{a_rx}, callee {b_tx}/{b_rx}; record {}; {:?}",
        row["media"],
        t0.elapsed()
    );
}

#[test]
fn browser_calls_a_baresip_video_phone() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, DESK]);
    let mut desk = desk_phone(&switch, DESK, true);
    let mut browser = BrowserAgent::start(switch.dir(), "bv");
    let page = browser_dials(&mut browser, &switch, DESK.0, true);

    let (stats, decoded) = stats_until(&mut browser, page, Duration::from_secs(10), |s| {
        video_num(s, "framesDecoded") > 20.0
    });
    let relay = (
        counter(&stream_counters(&switch, 1, "caller->callee"), "packets"),
        counter(&stream_counters(&switch, 1, "callee->caller"), "packets"),
    );
    assert!(
        decoded,
        "the browser decoded no video from baresip (relay stream 1: browser->baresip {}, \
         baresip->browser {}): {stats:#}",
        relay.0, relay.1
    );
    let was = video_num(&stats, "framesDecoded");
    let (later, grew) = stats_until(&mut browser, page, Duration::from_secs(5), |s| {
        video_num(s, "framesDecoded") >= was + 15.0
    });
    assert!(grew, "decoded frames stopped at {was}: {later:#}");
    assert!(
        relay.0 > 0,
        "the browser's video did not reach the relay: {relay:?}"
    );
    browser.hangup(page);
    desk.stop();
    eprintln!(
        "browser <- baresip video: {}; relay stream 1 {relay:?}; {:?}",
        later["video"],
        t0.elapsed()
    );
}

/// The same VP8 interop with the desk phone offering (its SDP opens the relay without
/// rtcp-mux, which the browser-offered call above gets wrong): baresip's `vp8` module and
/// Chromium's VP8 decode each other's frames.
#[test]
fn baresip_video_phone_calls_the_browser() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, DESK]);
    let mut desk = desk_phone(&switch, DESK, true);
    let mut browser = BrowserAgent::start(switch.dir(), "vb");
    let page = desk_dials_browser(&mut browser, &switch, &desk, true);

    let (stats, decoded) = stats_until(&mut browser, page, Duration::from_secs(10), |s| {
        video_num(s, "framesDecoded") > 20.0
    });
    let relay = || {
        (
            counter(&stream_counters(&switch, 1, "caller->callee"), "packets"),
            counter(&stream_counters(&switch, 1, "callee->caller"), "packets"),
        )
    };
    assert!(
        decoded,
        "the browser decoded no video from baresip (relay stream 1 baresip->browser, \
         browser->baresip: {:?}): {stats:#}",
        relay()
    );
    let was = video_num(&stats, "framesDecoded");
    let (later, grew) = stats_until(&mut browser, page, Duration::from_secs(5), |s| {
        video_num(s, "framesDecoded") >= was + 15.0
    });
    assert!(grew, "decoded frames stopped at {was}: {later:#}");
    assert!(
        video_num(&later, "framesSent") > 20.0,
        "the browser sent no video: {later:#}"
    );
    let on_the_relay = relay();
    desk.command_data("hangup", "");
    let (tx, rx) = baresip_totals_of(&desk, "video");
    assert!(
        tx >= 20 && rx >= 20,
        "baresip's video: sent {tx}, received {rx} (relay {on_the_relay:?})"
    );
    desk.stop();
    eprintln!(
        "baresip -> browser video: {}; relay stream 1 {on_the_relay:?}; baresip video tx {tx} \
         rx {rx}; {:?}",
        later["video"],
        t0.elapsed()
    );
}

/// A DTLS 1.2 record holding a ClientHello (random and session bytes from `n`).
fn dtls_client_hello(n: u32) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd]; // client_version DTLS 1.2
    body.extend((0..32).map(|i| (n.wrapping_mul(31).wrapping_add(i) & 0xff) as u8));
    body.push(0); // session id
    body.push(0); // cookie
    body.extend([0x00, 0x02, 0xc0, 0x2b]); // one cipher suite
    body.extend([0x01, 0x00]); // compression: null
    let len = body.len() as u32;
    let mut hs = vec![0x01]; // ClientHello
    hs.extend(&len.to_be_bytes()[1..]);
    hs.extend(((n & 0xffff) as u16).to_be_bytes()); // message_seq
    hs.extend([0, 0, 0]); // fragment offset
    hs.extend(&len.to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![0x16, 0xfe, 0xfd, 0x00, 0x00]; // handshake, DTLS 1.2, epoch 0
    rec.extend(&u64::from(n).to_be_bytes()[2..]); // sequence number
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// A STUN binding request with USERNAME `user` and a MESSAGE-INTEGRITY of garbage.
fn stun_binding(n: u32, user: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    let u = user.as_bytes();
    attrs.extend(0x0006u16.to_be_bytes());
    attrs.extend((u.len() as u16).to_be_bytes());
    attrs.extend(u);
    attrs.resize(attrs.len() + (4 - u.len() % 4) % 4, 0);
    attrs.extend(0x0024u16.to_be_bytes()); // PRIORITY
    attrs.extend(4u16.to_be_bytes());
    attrs.extend(0x6e00_1eff_u32.to_be_bytes());
    attrs.extend(0x0008u16.to_be_bytes()); // MESSAGE-INTEGRITY
    attrs.extend(20u16.to_be_bytes());
    attrs.extend((0..20).map(|i| (n as u8).wrapping_add(i)));
    let mut m = Vec::new();
    m.extend(0x0001u16.to_be_bytes());
    m.extend((attrs.len() as u16).to_be_bytes());
    m.extend(0x2112_a442_u32.to_be_bytes());
    m.extend(n.to_be_bytes());
    m.extend([0x5a; 8]);
    m.extend(attrs);
    m
}

/// The first `a=NAME:` value of an SDP.
fn attr<'a>(sdp: &'a str, name: &str) -> &'a str {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_default()
        .trim()
}

#[test]
fn dtls_and_stun_floods_do_not_harm_a_call() {
    let t0 = Instant::now();
    let mut switch = web_media_switch(&[BROWSER, DESK]);
    let mut desk = desk_phone(&switch, DESK, false);
    let mut browser = BrowserAgent::start(switch.dir(), "f");
    // (the desk phone dials: a browser's offer breaks the phone's leg, see
    // browser_calls_a_baresip_desk_phone)
    let page = desk_dials_browser(&mut browser, &switch, &desk, false);
    let (before, ok) = stats_until(&mut browser, page, Duration::from_secs(8), |s| {
        num(s, "packetsReceived") >= 100.0
    });
    assert!(ok, "no audio before the flood: {before:#}");
    // The browser leg's port: the candidate of the switch's SDP (the selected pair's remote).
    let (local, remote) = browser.sdp(page);
    let leg: SocketAddr = remote
        .lines()
        .find_map(|l| l.strip_prefix("a=candidate:"))
        .and_then(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()
        })
        .unwrap_or_else(|| panic!("no candidate in the switch's SDP:\n{remote}"));
    let pair = text(&before, "remoteCandidate");
    assert!(
        pair.starts_with(&leg.to_string()),
        "selected pair {pair}, leg {leg}"
    );
    // STUN with the call's real username (switch:browser), so only the integrity check stops it
    let user = format!(
        "{}:{}",
        attr(&remote, "ice-ufrag"),
        attr(&local, "ice-ufrag")
    );

    let attacker = UdpSocket::bind("127.0.0.77:0").expect("bind 127.0.0.77");
    attacker
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let flood_start = Instant::now();
    let base_rx = num(&browser.stats(page), "packetsReceived");
    let mut answers = 0;
    let mut buf = [0u8; 2048];
    for n in 0..5000u32 {
        let pkt = match n % 3 {
            0 => dtls_client_hello(n),
            1 => stun_binding(n, &user),
            _ => stun_binding(n, "evil:guest"),
        };
        let _ = attacker.send_to(&pkt, leg);
        if n % 50 == 49 {
            // ~1 s in all: 5000 datagrams at about 5 per ms
            std::thread::sleep(Duration::from_millis(10));
            while attacker.recv_from(&mut buf).is_ok() {
                answers += 1;
            }
        }
    }
    let flood_time = flood_start.elapsed();
    while attacker.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    let (after, grew) = stats_until(&mut browser, page, Duration::from_secs(6), |s| {
        num(s, "packetsReceived") >= base_rx + 100.0
    });
    assert!(
        grew,
        "the browser's packets stopped growing after the flood (from {base_rx}): {after:#}"
    );
    assert_eq!(text(&after, "dtlsState"), "connected", "{after:#}");
    assert_eq!(
        text(&after, "remoteCandidate"),
        pair,
        "the selected pair moved"
    );
    // the browser (callee) to the desk phone, in the relay
    let ba = counter(&stream_counters(&switch, 0, "callee->caller"), "packets");
    let grew_relay = Switch::eventually(Duration::from_secs(3), || {
        counter(&stream_counters(&switch, 0, "callee->caller"), "packets") > ba + 20
    });
    assert!(grew_relay, "browser -> desk phone stopped in the relay");
    switch.assert_alive();
    browser.hangup(page);
    let (tx, rx) = baresip_totals(&desk);
    assert!(tx >= 150 && rx >= 150, "baresip sent {tx}, received {rx}");
    assert_answered_cdr(&switch, DESK.0, BROWSER.0, 150);
    desk.stop();
    eprintln!(
        "flood: 5000 datagrams to {leg} in {flood_time:?}, {answers} answers to the attacker; \
         {:?}",
        t0.elapsed()
    );
}

/// A browser joins conference room 8000 with a baresip desk phone sending a 440 Hz tone:
/// the page's call goes through the gateway (DTLS-SRTP on the page's side, plain RTP into
/// the room's mixer), the browser hears the desk phone's tone in the mix and the desk phone
/// hears the browser, both in PCMU; `tambun conf show` lists both. Then the browser holds
/// and resumes (a re-INVITE the room answers with the same answer), and leaves: the relay
/// session of its gateway leg goes with it.
#[test]
fn a_browser_joins_a_conference_room_with_a_desk_phone() {
    let switch = web_media_switch(&[BROWSER, DESK]);
    let mut desk = desk_phone(&switch, DESK, false);
    desk.command_data("dial", &format!("sip:8000@{}", switch.sip));
    let desk_in = Switch::eventually(Duration::from_secs(10), || desk.has_established_call());
    assert!(
        desk_in,
        "the desk phone never got into 8000: {}",
        desk.log_text()
    );
    let mut browser = BrowserAgent::start(switch.dir(), "room");
    let page = browser_dials(&mut browser, &switch, "8000", false);
    let (stats, held) = stats_until(&mut browser, page, Duration::from_secs(12), |s| {
        num(s, "packetsReceived") >= 200.0
            && num(s, "packetsSent") >= 200.0
            && num(s, "totalAudioEnergy") > 0.0
    });
    assert!(
        held,
        "the browser in the room: {stats:#}\nrelay: {}\n{}",
        calls_json(&switch),
        switch.log_text()
    );
    assert_browser_audio(&stats, "server");
    let show = switch.cli_ok(&["conf", "show", "8000", "--json"]);
    let room: Value = serde_json::from_str(&show).expect("conf show --json");
    let people: Vec<String> = room["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["extension"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        people.contains(&BROWSER.0.to_owned()) && people.contains(&DESK.0.to_owned()),
        "{room:#}"
    );

    // Hold and resume: the room keeps its media, the call stays up.
    browser.hold(page);
    browser.unhold(page);
    assert_call_up(&mut browser, page, "after hold and resume in the room");
    let before = num(&browser.stats(page), "packetsReceived");
    let (after, flowing) = stats_until(&mut browser, page, Duration::from_secs(5), |s| {
        num(s, "packetsReceived") >= before + 50.0
    });
    assert!(flowing, "no mix after resume: {after:#}");

    browser.hangup(page);
    let gone = Switch::eventually(Duration::from_secs(5), || {
        let out = switch.cli(&["conf", "show", "8000", "--json"]);
        let room: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        room["participants"].as_array().map_or(0, Vec::len) == 1
    });
    assert!(gone, "the browser is still in the room");
    desk.command("hangup", "");
    let (tx, rx) = baresip_totals(&desk);
    assert!(
        tx >= 150 && rx >= 150,
        "baresip sent {tx} and received {rx} RTP packets in the room"
    );
    desk.stop();
    // Every relay session closed (the gateway leg's with the browser, the room's ports).
    let idle = Switch::eventually(Duration::from_secs(5), || live_calls(&switch).is_empty());
    assert!(idle, "sessions left: {}", calls_json(&switch));
}

/// The page's meeting rooms: Diskominfo's 3501 (a moderator of 8000 by its OPD) logs in, sees
/// room 8000 in its list, joins it with the room's button while a Setda baresip is in with a
/// tone; the page lists 1001 as talking, mutes it with the moderator's button (the room's
/// state says muted), and locks the room. A screenshot of the view is kept
/// (`target/phone-screenshots/phone-rooms-id.png`).
#[test]
fn the_page_lists_a_room_joins_it_and_the_moderator_mutes_and_locks() {
    const MODERATOR: (&str, &str, &str) = ("3501", "diskominfo", "rahasia3501");
    let switch = web_media_switch(&[MODERATOR, DESK]);
    let mut desk = desk_phone(&switch, DESK, false);
    desk.command_data("dial", &format!("sip:8000@{}", switch.sip));
    assert!(
        Switch::eventually(Duration::from_secs(10), || desk.has_established_call()),
        "the desk phone never got into 8000: {}",
        desk.log_text()
    );
    let mut browser = BrowserAgent::start(switch.dir(), "rooms");
    let page = browser.open(&switch);
    browser.login_ok(page, MODERATOR.0, MODERATOR.2);
    browser
        .wait_for(page, "room-join-8000", None)
        .expect("room 8000 in the page's list");
    browser.click(page, "room-join-8000");
    browser.wait_media(page);
    if let Err(e) = browser.wait_status(page, "^Terhubung", Duration::from_secs(5)) {
        panic!("the room call never showed Terhubung: {e}");
    }
    let talking = browser.wait_for(
        page,
        "room-participant-1001",
        Some(("data-talking", "true")),
    );
    assert!(
        talking.is_ok(),
        "1001 is not shown talking: {talking:?}\n{}",
        switch.cli_ok(&["conf", "show", "8000", "--json"])
    );
    browser
        .wait_for(page, "room-participant-3501", None)
        .expect("the page lists itself");
    // Kept past the test's temp dir, as the console's are (docs/phone-rooms-id.png is one).
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("phone-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    browser.screenshot(page, &shots.join("phone-rooms-id.png"));
    assert!(shots.join("phone-rooms-id.png").exists());

    browser.click(page, "room-mute-1001");
    let muted = browser.wait_for(page, "room-participant-1001", Some(("data-muted", "true")));
    let show: Value =
        serde_json::from_str(&switch.cli_ok(&["conf", "show", "8000", "--json"])).unwrap();
    assert!(muted.is_ok(), "the page does not show 1001 muted: {show:#}");
    let desk_row = show["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["extension"] == DESK.0)
        .cloned()
        .unwrap_or_default();
    assert_eq!(desk_row["muted"], true, "{show:#}");

    browser.click(page, "room-lock-8000");
    let locked = browser.wait_for(page, "room-8000", Some(("data-locked", "true")));
    assert!(
        locked.is_ok(),
        "the page does not show the lock: {locked:?}"
    );
    let show: Value =
        serde_json::from_str(&switch.cli_ok(&["conf", "show", "8000", "--json"])).unwrap();
    assert_eq!(show["locked"], true, "{show:#}");

    browser.hangup(page);
    desk.command("hangup", "");
    desk.stop();
}

/// The room's video part of `tambun conf show ROOM --json`.
fn room_video(switch: &Switch, room: &str) -> Value {
    let out = switch.cli(&["conf", "show", room, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["video"].clone()
}

/// Video in a room: two baresip video phones (`fakevideo` + `vp8`) and a Chromium page
/// with its camera join room 8000. The room's SFU forwards VP8 without transcoding: each
/// baresip receives video and the browser decodes frames (each has one video line, so each
/// sees one other camera: the last talker, else the first to join); `conf show` and
/// `/metrics` count the cameras, the slots and the forwarded packets; the audio stays one mix.
#[test]
fn video_phones_and_a_browser_see_each_other_in_room_8000() {
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, DESK, DESK2]);
    let mut desks = Vec::new();
    for who in [DESK, DESK2] {
        let desk = desk_phone_for(&switch, who, true, 120);
        desk.command_data("dial", &format!("sip:8000@{}", switch.sip));
        let up = Switch::eventually(Duration::from_secs(10), || desk.has_established_call());
        assert!(up, "{} never got into 8000: {}", who.0, desk.log_text());
        desks.push(desk);
    }
    let mut video = Value::Null;
    let both = Switch::eventually(Duration::from_secs(10), || {
        video = room_video(&switch, "8000");
        video["publishers"] == 2 && video["subscriptions"] == 2
    });
    assert!(
        both,
        "the two cameras do not reach each other: {video:#}\n{}",
        switch.log_text()
    );
    let mut browser = BrowserAgent::start(switch.dir(), "vroom");
    let page = browser_dials(&mut browser, &switch, "8000", true);
    let (stats, decoded) = stats_until(&mut browser, page, Duration::from_secs(12), |s| {
        video_num(s, "framesDecoded") > 20.0 && num(s, "packetsReceived") >= 100.0
    });
    assert!(
        decoded,
        "the browser decoded no camera from the room: {stats:#}\nroom video {}",
        room_video(&switch, "8000")
    );
    let was = video_num(&stats, "framesDecoded");
    let (later, grew) = stats_until(&mut browser, page, Duration::from_secs(8), |s| {
        video_num(s, "framesDecoded") >= was + 15.0
            && num(s, "packetsReceived") >= 200.0
            && num(s, "packetsSent") >= 200.0
    });
    assert!(grew, "decoded frames stopped at {was}: {later:#}");
    let mut video = Value::Null;
    let three = Switch::eventually(Duration::from_secs(10), || {
        video = room_video(&switch, "8000");
        video["publishers"] == 3 && video["subscriptions"] == 3
    });
    assert!(three, "the browser's camera is not in the room: {video:#}");
    assert!(video["forwarded"].as_u64().unwrap_or(0) > 100, "{video:#}");
    let (_, metrics) = admin_get_text(&switch, "/metrics");
    assert!(
        metrics.contains("tambun_room_video_publishers{room=\"8000\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("tambun_room_video_forwarded_packets_total{room=\"8000\"}"));
    // One audio mix for phones and browser.
    assert_browser_audio(&later, "server");
    browser.hangup(page);
    for desk in desks.iter_mut() {
        desk.command_data("hangup", "");
        let (tx, rx) = baresip_totals_of(desk, "video");
        assert!(
            tx >= 40 && rx >= 40,
            "a baresip video phone in the room sent {tx} and received {rx} video packets"
        );
    }
    for mut desk in desks {
        desk.stop();
    }
    let idle = Switch::eventually(Duration::from_secs(5), || live_calls(&switch).is_empty());
    assert!(idle, "sessions left: {}", calls_json(&switch));
    eprintln!(
        "room 8000 video: browser {}; room {video}; {:?}",
        later["video"],
        t0.elapsed()
    );
}

/// Video slots of a page's stats with at least `frames` decoded: (mid, framesDecoded).
fn decoding_slots(stats: &Value, frames: f64) -> Vec<(String, f64)> {
    stats["video"]["slots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| num(s, "framesDecoded") >= frames)
        .map(|s| (text(s, "mid"), num(s, "framesDecoded")))
        .collect()
}

/// Whom each participant's video lines show, from `conf show ROOM --json`.
fn showing(switch: &Switch, room: &str) -> Vec<(String, Vec<String>)> {
    let out = switch.cli(&["conf", "show", room, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let shows = p["showing"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
            (text(p, "extension"), shows)
        })
        .collect()
}

/// A video room from the page: three Chromium participants join room 8000 with their
/// cameras from the Rooms view (`room-join-video-8000`: the camera's video line and two more
/// to receive) beside a baresip video phone. Each page decodes three streams (each of the
/// others), and every decoded stream keeps growing; the grid labels its tiles. A fourth
/// camera (a second baresip) joins: last-N holds (each page still shows three, none of them
/// itself), the frames keep coming, and the phones' audio and the browsers' is one mix.
#[test]
fn three_browsers_and_video_phones_share_a_video_room() {
    const THIRD: (&str, &str, &str) = ("1004", "setda", "rahasia1004");
    let t0 = Instant::now();
    let switch = web_media_switch(&[BROWSER, BROWSER2, THIRD, DESK, DESK2]);
    // A tone of two minutes: baresip hangs up when its audio file ends, and under a full
    // parallel run the three pages take a while to join.
    let desk = desk_phone_for(&switch, DESK, true, 120);
    desk.command_data("dial", &format!("sip:8000@{}", switch.sip));
    assert!(
        Switch::eventually(Duration::from_secs(10), || desk.has_established_call()),
        "the desk phone never got into 8000: {}",
        desk.log_text()
    );
    // Three pages with cameras: no other test's Chromium beside them.
    let mut browser = BrowserAgent::start_alone(switch.dir(), "vgrid");
    let mut pages = Vec::new();
    for who in [BROWSER, BROWSER2, THIRD] {
        let page = join_video_room(&mut browser, &switch, who);
        pages.push((who.0, page));
    }
    // Each page decodes the three others (two browsers and the desk phone).
    for &(ext, page) in &pages {
        let (stats, three) = stats_until(&mut browser, page, Duration::from_secs(20), |s| {
            decoding_slots(s, 10.0).len() >= 3
        });
        assert!(
            three,
            "{ext} decodes fewer than three streams: {:#}\nroom: {:?} {}",
            stats["video"],
            showing(&switch, "8000"),
            room_video(&switch, "8000")
        );
    }
    let mut video = Value::Null;
    let all = Switch::eventually(Duration::from_secs(10), || {
        video = room_video(&switch, "8000");
        video["publishers"] == 4 && video["subscriptions"] == 10
    });
    assert!(all, "four cameras, 3 × 3 + 1 slots: {video:#}");
    for (ext, shows) in showing(&switch, "8000") {
        let want = if ext == DESK.0 { 1 } else { 3 };
        assert_eq!(shows.len(), want, "{ext} shows {shows:?}");
        assert!(!shows.contains(&ext), "{ext} is shown itself");
    }
    // The grid labels its tiles with whom the room shows there.
    let (_, first) = pages[0];
    let labelled = browser.wait_for(first, "room-video-0", Some(("data-who", DESK.0)));
    let labelled =
        labelled.or_else(|_| browser.wait_for(first, "room-video-1", Some(("data-who", DESK.0))));
    let labelled =
        labelled.or_else(|_| browser.wait_for(first, "room-video-2", Some(("data-who", DESK.0))));
    assert!(
        labelled.is_ok(),
        "no tile of the first page shows the desk phone: {labelled:?}"
    );
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("phone-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    browser.screenshot(first, &shots.join("phone-room-video-id.png"));

    // A fourth camera joins: each page still shows three (last-N), the frames go on.
    let before: Vec<f64> = pages
        .iter()
        .map(|&(_, p)| video_num(&browser.stats(p), "framesDecoded"))
        .collect();
    let desk2 = desk_phone_for(&switch, DESK2, true, 120);
    desk2.command_data("dial", &format!("sip:8000@{}", switch.sip));
    assert!(
        Switch::eventually(Duration::from_secs(10), || desk2.has_established_call()),
        "the second desk phone never got into 8000"
    );
    let mut video = Value::Null;
    let five = Switch::eventually(Duration::from_secs(10), || {
        video = room_video(&switch, "8000");
        video["publishers"] == 5 && video["subscriptions"] == 11
    });
    assert!(
        five,
        "five cameras, 3 × 3 + 2 slots: {video:#}\nshowing: {:?}\n{}",
        showing(&switch, "8000"),
        switch.cli_ok(&["conf", "show", "8000", "--json"])
    );
    for (ext, shows) in showing(&switch, "8000") {
        assert!(
            shows.len() <= 3 && !shows.contains(&ext),
            "{ext} shows {shows:?}"
        );
    }
    for (k, &(ext, page)) in pages.iter().enumerate() {
        let (stats, grew) = stats_until(&mut browser, page, Duration::from_secs(10), |s| {
            video_num(s, "framesDecoded") >= before[k] + 45.0 && decoding_slots(s, 10.0).len() >= 3
        });
        assert!(grew, "{ext}'s decoded frames stopped: {:#}", stats["video"]);
        assert!(
            num(&stats, "totalAudioEnergy") > 0.0,
            "{ext} hears nothing of the room: {stats:#}"
        );
    }
    for &(_, page) in &pages {
        // Three pages encoding and decoding video in one Chromium, beside the rest of the
        // suite: a click can wait seconds for the page.
        browser.hangup_within(page, Duration::from_secs(40));
    }
    let (tx, rx) = {
        desk.command_data("hangup", "");
        baresip_totals_of(&desk, "video")
    };
    assert!(
        tx >= 40 && rx >= 40,
        "the desk phone's video: sent {tx}, received {rx}"
    );
    desk2.command_data("hangup", "");
    let mut desk = desk;
    let mut desk2 = desk2;
    desk.stop();
    desk2.stop();
    let idle = Switch::eventually(Duration::from_secs(8), || live_calls(&switch).is_empty());
    assert!(idle, "sessions left: {}", calls_json(&switch));
    eprintln!("video room: {video}; {:?}", t0.elapsed());
}

/// A page logs in as `who` and joins room 8000 with its camera from the Rooms view
/// (`room-join-video-8000`), media connected.
fn join_video_room(browser: &mut BrowserAgent, switch: &Switch, who: (&str, &str, &str)) -> u64 {
    let page = browser.open(switch);
    browser.login_ok(page, who.0, who.2);
    browser
        .wait_for(page, "room-join-video-8000", None)
        .expect("room 8000 with its video button");
    browser.click(page, "room-join-video-8000");
    if let Err(e) = browser.wait_status(page, "^Terhubung", Duration::from_secs(15)) {
        panic!(
            "{} never got into the video room: {e}\n{:#}\n{}",
            who.0,
            browser.state(page),
            switch.log_text()
        );
    }
    if let Err(e) = browser.request(
        "waitMedia",
        serde_json::json!({ "page": page }),
        Duration::from_secs(18),
    ) {
        let (local, remote) = browser.sdp(page);
        panic!(
            "{e}\nlocal:\n{local}\nremote:\n{remote}\n{:#}\n{}",
            browser.state(page),
            switch.log_text()
        );
    }
    page
}

/// The shape (height / width) of the frames a page decodes on its video lines that have
/// decoded at least 10 frames; 0 without any.
fn slot_shapes(stats: &Value) -> Vec<f64> {
    stats["video"]["slots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| num(s, "framesDecoded") >= 10.0 && num(s, "frameWidth") > 0.0)
        .map(|s| num(s, "frameHeight") / num(s, "frameWidth"))
        .collect()
}

/// A 4:3 picture (Chromium's fake camera, 640×480) or a 16:9 one (its fake screen,
/// 1280×720, which the encoder may scale down but keeps in shape).
fn is_camera(shape: f64) -> bool {
    (shape - 0.75).abs() < 0.03
}

fn is_screen(shape: f64) -> bool {
    (shape - 0.5625).abs() < 0.03
}

/// Screen sharing in a video room: a page shares its screen ("Bagikan layar", Chromium's
/// fake 16:9 screen) instead of its 4:3 camera, without a re-INVITE: the other page then
/// decodes 16:9 frames from the room on the line that showed the camera, and the camera
/// again when sharing stops.
#[test]
fn a_page_shares_its_screen_in_a_video_room() {
    let switch = web_media_switch(&[BROWSER, BROWSER2]);
    let mut browser = BrowserAgent::start(switch.dir(), "vscreen");
    let sharer = join_video_room(&mut browser, &switch, BROWSER);
    let viewer = join_video_room(&mut browser, &switch, BROWSER2);
    let (stats, camera) = stats_until(&mut browser, viewer, Duration::from_secs(20), |s| {
        slot_shapes(s).into_iter().any(is_camera)
    });
    assert!(camera, "the viewer decodes no camera: {:#}", stats["video"]);
    browser
        .wait_for(sharer, "room-screen", None)
        .expect("the share-screen button");
    browser.click(sharer, "room-screen");
    let (stats, sent) = stats_until(&mut browser, sharer, Duration::from_secs(15), |s| {
        let (w, h) = (video_num(s, "sendWidth"), video_num(s, "sendHeight"));
        w > 0.0 && is_screen(h / w)
    });
    assert!(
        sent,
        "the sharer does not send its screen: {:#}\nerror: {:?}",
        stats["video"],
        browser.error_text(sharer)
    );
    let (stats, seen) = stats_until(&mut browser, viewer, Duration::from_secs(15), |s| {
        let shapes = slot_shapes(s);
        shapes.iter().any(|x| is_screen(*x)) && !shapes.iter().any(|x| is_camera(*x))
    });
    assert!(
        seen,
        "the viewer does not see the screen instead of the camera: {:#}\nroom video {}",
        stats["video"],
        room_video(&switch, "8000")
    );
    let frames = video_num(&stats, "framesDecoded");
    let (stats, grew) = stats_until(&mut browser, viewer, Duration::from_secs(10), |s| {
        video_num(s, "framesDecoded") >= frames + 20.0
    });
    assert!(grew, "the screen's frames stopped: {:#}", stats["video"]);
    // Sharing stops: the camera again, on the same line.
    browser.click(sharer, "room-screen");
    let (stats, back) = stats_until(&mut browser, viewer, Duration::from_secs(15), |s| {
        let shapes = slot_shapes(s);
        shapes.iter().any(|x| is_camera(*x)) && !shapes.iter().any(|x| is_screen(*x))
    });
    assert!(back, "the camera does not come back: {:#}", stats["video"]);
    // The same two calls all along (replaceTrack, no new INVITE): two cameras in the room.
    let video = room_video(&switch, "8000");
    assert_eq!(video["publishers"], 2, "{video:#}");
    for page in [sharer, viewer] {
        browser.hangup_within(page, Duration::from_secs(20));
    }
    let idle = Switch::eventually(Duration::from_secs(8), || live_calls(&switch).is_empty());
    assert!(idle, "sessions left: {}", calls_json(&switch));
}

/// A measurement, not a check of speed (run by hand; docs/bench-conference.md has a run):
/// the page's join of a video room, click on "Gabung dengan video" to the first decoded
/// frame of another camera and decoded audio, 20 times, p50/p95 printed by
/// `tests/browser/setup-time.mjs --room-video`. A baresip video phone is in room 8000.
///
///   cargo test --test it room_video_join_time -- --ignored --nocapture
#[test]
#[ignore = "a measurement; run by hand"]
fn room_video_join_time() {
    let switch = web_media_switch(&[BROWSER, DESK]);
    let desk = desk_phone_for(&switch, DESK, true, 600);
    desk.command_data("dial", &format!("sip:8000@{}", switch.sip));
    assert!(
        Switch::eventually(Duration::from_secs(10), || desk.has_established_call()),
        "the desk phone never got into 8000"
    );
    let out = std::process::Command::new("node")
        .arg(crate::common::browser::repo_path(
            "tests/browser/setup-time.mjs",
        ))
        .arg(crate::common::browser::base_url(&switch))
        .arg(format!("{}:{}", BROWSER.0, BROWSER.2))
        .arg("8000")
        .arg(std::env::var("JOINS").unwrap_or_else(|_| "20".into()))
        .arg("--room-video")
        .current_dir(switch.dir())
        .output()
        .expect("run node tests/browser/setup-time.mjs");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "some joins got no media: {}\n{}",
        switch.cli_ok(&["conf", "show", "8000", "--json"]),
        switch.log_text()
    );
    let mut desk = desk;
    desk.stop();
}
