//! Room 8000 of the shipped plan with real phones (issue 12): baresip participants from four
//! OPDs and a SIPp one each send a tone of their own frequency (aufile; SIPp plays a pcap)
//! and the baresips dump what they hear (sndfile); the switch answers for the room and
//! mixes. Each one's received audio holds the others' frequencies and not its own (Goertzel
//! on the dumped WAV); the call records name the room; when everyone has hung up the relay
//! holds no port. The operator's controls (`tambun conf mute|kick|lock`) change what the
//! others hear and who may join; a removed participant rejoins.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::baresip::{account, Baresip};
use crate::common::calls::{assert_sipp_ok, sipp_call};
use crate::common::media::{admin_get_text, media_switch, wait_relay_idle};
use crate::common::peers::sipp_scenario;
use crate::common::Switch;

const PEOPLE: [(&str, &str, &str, f64); 4] = [
    ("1000", "setda", "rahasia1000", 500.0),
    ("2300", "dinkes", "rahasia2300", 800.0),
    ("3501", "diskominfo", "rahasia3501", 1100.0),
    ("1400", "bappedalitbang", "rahasia1400", 1700.0),
];

/// The fifth participant of room 8000: SIPp playing a tone.
const SIPP: (&str, &str, &str, f64) = ("1001", "setda", "rahasia1001", 1300.0);

/// A 16-bit mono 8 kHz WAV of a tone at `hz` lasting `secs`.
fn tone_wav(path: &Path, hz: f64, secs: u32) {
    tone_wav_at(path, hz, secs, 8000);
}

/// [`tone_wav`] at `rate` samples per second (baresip's aufile wants its codec's rate).
fn tone_wav_at(path: &Path, hz: f64, secs: u32, rate: u32) {
    tone_wav_channels(path, hz, secs, rate, 1);
}

/// The same tone on `channels` channels (baresip's Opus is stereo: its file must be too).
pub(crate) fn tone_wav_channels(path: &Path, hz: f64, secs: u32, rate: u32, channels: u16) {
    let ch = u32::from(channels);
    let samples = rate * secs * ch;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + samples * 2).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, channels] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    for v in [rate, 2 * rate * ch] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    for v in [2 * channels, 16] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(samples * 2).to_le_bytes());
    for i in 0..samples {
        let t = f64::from(i / ch) / f64::from(rate);
        let v = (6000.0 * (std::f64::consts::TAU * hz * t).sin()) as i16;
        w.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, w).expect("write tone WAV");
}

/// A pcap (Ethernet, IPv4, UDP, RTP PCMU, 20 ms) of a tone at `hz` lasting `secs`, for
/// SIPp's `play_pcap_audio` (it rewrites the addresses and ports).
fn tone_pcap(path: &Path, hz: f64, secs: u32) {
    let mut w = Vec::new();
    w.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65535, 1] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    for n in 0..secs * 50 {
        let mut rtp = vec![0x80, if n == 0 { 0x80 } else { 0 }];
        rtp.extend_from_slice(&(n as u16).to_be_bytes());
        rtp.extend_from_slice(&(n * 160).to_be_bytes());
        rtp.extend_from_slice(&0x5ee5_0001u32.to_be_bytes());
        for i in 0..160 {
            let t = f64::from(n * 160 + i) / 8000.0;
            let v = (6000.0 * (std::f64::consts::TAU * hz * t).sin()) as i16;
            rtp.push(tambun::media::mixer::g711::linear_to_ulaw(v));
        }
        let udp_len = 8 + rtp.len() as u16;
        let ip_len = 20 + udp_len;
        let mut pkt = vec![0u8; 12];
        pkt.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&ip_len.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let sum = ip
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum::<u32>();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        pkt.extend_from_slice(&ip);
        pkt.extend_from_slice(&6000u16.to_be_bytes());
        pkt.extend_from_slice(&6002u16.to_be_bytes());
        pkt.extend_from_slice(&udp_len.to_be_bytes());
        pkt.extend_from_slice(&[0, 0]);
        pkt.extend_from_slice(&rtp);
        let usec = u64::from(n) * 20_000;
        for v in [(usec / 1_000_000) as u32, (usec % 1_000_000) as u32] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        for _ in 0..2 {
            w.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        }
        w.extend_from_slice(&pkt);
    }
    std::fs::write(path, w).expect("write tone pcap");
}

/// SIPp's media-uac-pcap.xml playing `pcap` instead of its DTMF capture, written to `work`.
fn tone_scenario(work: &Path, pcap: &Path) -> PathBuf {
    let template = std::fs::read_to_string(sipp_scenario("media-uac-pcap.xml"))
        .expect("read media-uac-pcap.xml");
    let path = work.join("room-tone.xml");
    let text = template.replace(
        "/usr/share/sip-tester/dtmf_2833_1.pcap",
        &pcap.display().to_string(),
    );
    assert_ne!(
        text, template,
        "media-uac-pcap.xml no longer plays its capture"
    );
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// baresip's audio settings for a participant that sends the WAV `tone` (aufile) and, with
/// `dumps`, writes what it hears there (sndfile).
pub(crate) fn tone_audio(tone: &Path, dumps: Option<&Path>) -> String {
    let mut audio = format!(
        "audio_player\t\talsa,null\n\
         audio_alert\t\talsa,null\n\
         audio_source\t\taufile,{}\n\
         module\t\t\taufile.so\n\
         module\t\t\talsa.so\n",
        tone.display()
    );
    if let Some(dumps) = dumps {
        audio.push_str(&format!(
            "audio_buffer\t\t20-160\nsnd_path\t\t{}\nmodule\t\t\tsndfile.so\n",
            dumps.display()
        ));
    }
    audio
}

/// A baresip of `ext`, registered, sending a tone at `hz` for `secs` (aufile) and offering
/// `codecs` (ptime 20); with `dumps`, it writes what it hears there (sndfile).
fn tone_phone(
    switch: &Switch,
    ext: &str,
    password: &str,
    hz: f64,
    secs: u32,
    codecs: &str,
    dumps: Option<&Path>,
) -> Baresip {
    let tone = switch.dir().join(format!("tone-{ext}.wav"));
    tone_wav(&tone, hz, secs);
    if let Some(dumps) = dumps {
        std::fs::create_dir_all(dumps).unwrap();
    }
    let audio = tone_audio(&tone, dumps);
    let acc = account(
        switch,
        ext,
        password,
        &format!(";audio_codecs={codecs};ptime=20"),
    );
    Baresip::start_registered(switch.dir(), ext, &acc, Some(&audio))
}

/// A baresip of `ext` that offers only `codec` (ptime 20; `extra` account parameters after),
/// plays a 30 s tone at `hz` from a `rate` Hz file (stereo at 48 kHz: baresip's Opus wants
/// it), loads `module` besides (`g722.so`, `opus.so`), and writes what it hears to the
/// returned folder.
pub(crate) fn codec_tone_phone(
    switch: &Switch,
    (ext, password): (&str, &str),
    hz: f64,
    (codec, rate, module): (&str, u32, &str),
    extra: &str,
) -> (PathBuf, Baresip) {
    let tone = switch.dir().join(format!("tone-{ext}.wav"));
    tone_wav_channels(&tone, hz, 30, rate, if rate == 48000 { 2 } else { 1 });
    let dumps = switch.dir().join(format!("dump-{ext}"));
    std::fs::create_dir_all(&dumps).unwrap();
    let audio = tone_audio(&tone, Some(&dumps)) + &format!("module\t\t\t{module}\n");
    let acc = account(
        switch,
        ext,
        password,
        &format!(";audio_codecs={codec};ptime=20{extra}"),
    );
    (
        dumps,
        Baresip::start_registered(switch.dir(), ext, &acc, Some(&audio)),
    )
}

/// What a [`codec_tone_phone`] heard: it speaks `codec` (baresip logs its encoder) and its
/// newest dump holds more than `min_secs` of audio; the dump's last 2 s and its rate.
#[track_caller]
pub(crate) fn heard_tail(
    ext: &str,
    codec: &str,
    dumps: &Path,
    phone: &Baresip,
    min_secs: f64,
) -> (Vec<i16>, f64) {
    let name = codec.split('/').next().unwrap_or_default();
    assert!(
        phone
            .log_text()
            .contains(&format!("Set audio encoder: {name}")),
        "{ext} does not speak {codec}:\n{}",
        phone.log_text()
    );
    let (samples, rate) = newest_dump(dumps);
    assert!(
        samples.len() as f64 > min_secs * rate,
        "{ext} ({codec}) heard {} samples at {rate} Hz:\n{}",
        samples.len(),
        phone.log_text()
    );
    (
        samples[samples.len() - (2.0 * rate) as usize..].to_vec(),
        rate,
    )
}

/// `phone` (extension `ext`) dials `room` and is in it within 10 s.
#[track_caller]
fn dial_room(switch: &Switch, phone: &Baresip, ext: &str, room: &str) {
    let answer = phone.command_data("dial", &format!("sip:{room}@{}", switch.sip));
    let up = Switch::eventually(Duration::from_secs(10), || phone.has_established_call());
    assert!(
        up,
        "{ext} is not in room {room} (dial: {answer}):\n{}",
        phone.log_text()
    );
}

/// The last participant, `phone`, hangs up: `room` is empty and the relay holds nothing.
#[track_caller]
fn last_one_leaves(switch: &Switch, phone: &mut Baresip, room: &str) {
    phone.command_data("hangup", "");
    let gone = Switch::eventually(Duration::from_secs(5), || conf_show(switch, room).is_null());
    assert!(gone, "room {room} still has participants");
    phone.stop();
    let idle = wait_relay_idle(switch, Duration::from_secs(5));
    assert_eq!(idle, (0, 0), "the relay still holds ports or sessions");
}

/// The samples of a 16-bit PCM WAV (the data chunk).
fn wav_samples(path: &Path) -> Vec<i16> {
    let b = std::fs::read(path).unwrap_or_default();
    let Some(at) = b.windows(4).position(|w| w == b"data") else {
        return Vec::new();
    };
    // The first channel of each frame.
    let channels = b
        .get(22..24)
        .map_or(1, |c| u16::from_le_bytes([c[0], c[1]]).max(1));
    b[at + 8..]
        .chunks_exact(2 * usize::from(channels))
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Power at `hz` (Goertzel, sample rate `rate`), normalised by length.
pub(crate) fn goertzel(samples: &[i16], hz: f64, rate: f64) -> f64 {
    let c = 2.0 * (std::f64::consts::TAU * hz / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = f64::from(*x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (samples.len() as f64).powi(2)
}

/// The sample rate of a WAV (its fmt chunk).
fn wav_rate(path: &Path) -> f64 {
    let b = std::fs::read(path).unwrap_or_default();
    b.get(24..28)
        .map(|r| f64::from(u32::from_le_bytes([r[0], r[1], r[2], r[3]])))
        .unwrap_or(8000.0)
}

#[test]
fn five_phones_in_room_8000_hear_each_other_and_not_themselves() {
    let exts: Vec<(&str, &str, &str)> = PEOPLE
        .iter()
        .chain([&SIPP])
        .map(|(e, o, p, _)| (*e, *o, *p))
        .collect();
    let (switch, _range) = media_switch(&exts, "");
    let mut phones = Vec::new();
    for (ext, _, password, hz) in PEOPLE {
        let dumps = switch.dir().join(format!("dump-{ext}"));
        let phone = tone_phone(&switch, ext, password, hz, 30, "PCMU,PCMA", Some(&dumps));
        phones.push((ext, hz, dumps, phone));
    }
    for (ext, _, _, phone) in &phones {
        dial_room(&switch, phone, ext, "8000");
    }
    // The fifth, SIPp, plays its tone for 10 s; the baresips hang up while it plays.
    let pcap = switch.dir().join("tone-sipp.pcap");
    tone_pcap(&pcap, SIPP.3, 10);
    let scenario = tone_scenario(switch.dir(), &pcap);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut calls = String::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let run = sipp_call(
                &switch,
                "tone",
                SIPP.0,
                SIPP.2,
                "8000",
                &scenario,
                &["-d", "10000"],
            );
            tx.send(run).unwrap();
        });
        let mut room = serde_json::Value::Null;
        let five = Switch::eventually(Duration::from_secs(10), || {
            room = conf_show(&switch, "8000");
            room["participants"].as_array().map_or(0, Vec::len) == 5
        });
        assert!(five, "SIPp is not the fifth in room 8000: {room:#}");
        std::thread::sleep(Duration::from_secs(4));
        calls = switch.cli_ok(&["calls", "--json"]);
        // The operator's view: the five, all talking (each sends its tone).
        let show = switch.cli_ok(&["conf", "show", "8000", "--json"]);
        let room: serde_json::Value =
            serde_json::from_str(&show).expect("conf show --json is JSON");
        let mut in_room: Vec<&str> = room["participants"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["extension"].as_str()).collect())
            .unwrap_or_default();
        in_room.sort_unstable();
        let mut want: Vec<&str> = PEOPLE.iter().chain([&SIPP]).map(|p| p.0).collect();
        want.sort_unstable();
        assert_eq!(in_room, want, "{show}");
        let mut talkers: Vec<&str> = room["talkers"]
            .as_array()
            .map(|ts| ts.iter().filter_map(|t| t.as_str()).collect())
            .unwrap_or_default();
        talkers.sort_unstable();
        assert_eq!(talkers, want, "everyone sends a tone: {show}");
        let moderators: Vec<&str> = room["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["moderator"] == true)
            .filter_map(|p| p["extension"].as_str())
            .collect();
        assert_eq!(
            moderators,
            ["3501"],
            "Diskominfo moderates room 8000: {show}"
        );
        // SIPp records nothing: what it was sent stands for what it heard.
        let sipp_out = room["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["extension"] == SIPP.0)
            .map_or(0, |p| p["packets_out"].as_u64().unwrap_or(0));
        assert!(
            sipp_out > 100,
            "the room sent SIPp {sipp_out} packets: {show}"
        );
        let list = switch.cli_ok(&["conf", "list"]);
        assert!(list.contains("8000"), "{list}");
        let (_, metrics) = admin_get_text(&switch, "/metrics");
        for line in [
            "tambun_room_participants{room=\"8000\"} 5\n",
            "tambun_room_talkers{room=\"8000\"} 5\n",
            "tambun_room_mixed_streams{room=\"8000\"} 5\n",
            "tambun_rooms_active 1\n",
            "tambun_room_joins_total 5\n",
        ] {
            assert!(
                metrics.contains(line),
                "/metrics lacks {line:?}:\n{metrics}"
            );
        }
        for (_, _, _, phone) in &phones {
            phone.command_data("hangup", "");
        }
        std::thread::sleep(Duration::from_millis(500));
        for (_, _, _, phone) in phones.iter_mut() {
            phone.stop();
        }
    });
    assert_sipp_ok(&rx.recv().unwrap(), 1, "the SIPp participant");
    for (ext, hz, dumps, phone) in &phones {
        let dec = std::fs::read_dir(dumps)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| {
                panic!("{ext}: no decoded dump in {dumps:?}:\n{}", phone.log_text())
            });
        let samples = wav_samples(&dec);
        let rate = wav_rate(&dec);
        assert!(
            samples.len() as f64 > 2.5 * rate,
            "{ext} heard {} samples at {rate} Hz",
            samples.len()
        );
        // The last two seconds: everyone has joined by then.
        let tail = &samples[samples.len() - (2.0 * rate) as usize..];
        let powers: Vec<String> = PEOPLE
            .iter()
            .chain([&SIPP])
            .map(|(_, _, _, f)| format!("{f} Hz {:.0}", goertzel(tail, *f, rate)))
            .collect();
        eprintln!("{ext} ({hz} Hz) hears: {}", powers.join(", "));
        for (other, _, _, ohz) in PEOPLE.into_iter().chain([SIPP]) {
            let p = goertzel(tail, ohz, rate);
            if ohz == *hz {
                assert!(p < 2e3, "{ext} hears itself ({ohz} Hz): {p}");
            } else {
                assert!(p > 5e4, "{ext} does not hear {other} ({ohz} Hz): {p}");
            }
        }
    }
    assert!(
        calls.contains("room 8000"),
        "the calls name the room: {calls}"
    );
    // One record per participant; conference time per OPD in the summary.
    let records = crate::common::calls::wait_cdrs(&switch, 5);
    assert_eq!(records.len(), 5, "{records:#?}");
    let summary = switch.cli_ok(&["cdr", "summary", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary JSON");
    let conf_calls = |opd: &str| {
        summary["opds"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["opd"] == opd)
            .and_then(|o| {
                Some((
                    o["conference_calls"].as_u64()?,
                    o["conference_ms"].as_i64()?,
                ))
            })
    };
    for (opd, n) in [
        ("setda", 2),
        ("dinkes", 1),
        ("diskominfo", 1),
        ("bappedalitbang", 1),
    ] {
        let got = conf_calls(opd);
        assert!(
            got.is_some_and(|(calls, ms)| calls == n && ms > 3_000 * n as i64),
            "{opd}: conference calls and time {got:?}: {summary:#}"
        );
    }
    let idle = wait_relay_idle(&switch, Duration::from_secs(5));
    assert_eq!(idle, (0, 0), "the relay still holds ports or sessions");
}

/// `tambun conf show ROOM --json`, parsed (`Null` when nobody is in the room).
fn conf_show(switch: &Switch, room: &str) -> serde_json::Value {
    let out = switch.cli(&["conf", "show", room, "--json"]);
    if !out.status.success() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&out.stdout).expect("conf show --json is JSON")
}

/// Room 8001 asks for a PIN (2468; moderator PIN 1357). A Diskominfo baresip that enters
/// none waits outside: not a talker, not mixed, though it sends a tone; a Setda extension
/// (SIPp) enters the moderator PIN by SIP INFO digits and is in the room as its moderator;
/// one who gets the PIN wrong three times is hung up on by the switch (its BYE, Reason 403);
/// the room and the relay are empty afterwards.
#[test]
fn room_8001_asks_for_the_pin() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("1001", "setda", "rahasia1001"),
            ("3501", "diskominfo", "rahasia3501"),
        ],
        "",
    );
    let mut moderator = tone_phone(&switch, "3501", "rahasia3501", 700.0, 30, "PCMU", None);
    dial_room(&switch, &moderator, "3501", "8001");

    // The right PIN, then '#', by SIP INFO; the participant stays 4 s.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            // field2..field6 of the injection file are the digits the scenario sends.
            let run = sipp_call(
                &switch,
                "pin",
                "1000",
                "rahasia1000;1;3;5;7;#",
                "8001",
                &sipp_scenario("room-pin.xml"),
                &["-d", "4000"],
            );
            tx.send(run).unwrap();
        });
        let mut seen = serde_json::Value::Null;
        let admitted = Switch::eventually(Duration::from_secs(4), || {
            seen = conf_show(&switch, "8001");
            seen["participants"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["extension"] == "1000" && p["waiting_for_pin"] == false)
            })
        });
        assert!(admitted, "1000 is not in room 8001 after its PIN: {seen:#}");
        let waiting = seen["participants"].as_array().is_some_and(|ps| {
            ps.iter()
                .any(|p| p["extension"] == "3501" && p["waiting_for_pin"] == true)
        });
        assert!(waiting, "3501 entered no PIN but is in the room: {seen:#}");
        assert_eq!(seen["talkers"], serde_json::json!([]), "{seen:#}");
        assert_eq!(seen["mixed"], 0, "{seen:#}");
        let roles: Vec<(String, bool)> = seen["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["extension"].as_str().unwrap_or("").to_string(),
                    p["moderator"] == true,
                )
            })
            .collect();
        assert!(roles.contains(&("3501".into(), false)), "{seen:#}");
        assert!(
            roles.contains(&("1000".into(), true)),
            "the moderator PIN: {seen:#}"
        );
    });
    assert_sipp_ok(&rx.recv().unwrap(), 1, "the PIN participant");

    // Three wrong PINs: the switch hangs up (the scenario waits for its BYE).
    let wrong = sipp_call(
        &switch,
        "wrong",
        "1001",
        "rahasia1001",
        "8001",
        &sipp_scenario("room-pin-wrong.xml"),
        &[],
    );
    assert_sipp_ok(&wrong, 1, "the wrong-PIN participant");
    let messages = std::fs::read_to_string(wrong.dir.join("messages.log")).unwrap_or_default();
    assert!(
        messages.contains("wrong PIN"),
        "the switch's BYE says why:\n{messages}"
    );

    last_one_leaves(&switch, &mut moderator, "8001");
}

/// The samples of `dumps`' newest decoded dump (the last call's).
pub(crate) fn newest_dump(dumps: &Path) -> (Vec<i16>, f64) {
    let mut decs: Vec<PathBuf> = std::fs::read_dir(dumps)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    decs.retain(|p| p.to_string_lossy().ends_with("-dec.wav"));
    decs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.created()).ok());
    let Some(dec) = decs.last() else {
        return (Vec::new(), 8000.0);
    };
    (wav_samples(dec), wav_rate(dec))
}

/// Power at `hz` in the 2 s of `samples` that ended `before` the end of the dump.
fn power_before_end(samples: &[i16], rate: f64, before: Duration, hz: f64) -> f64 {
    let end = samples
        .len()
        .saturating_sub((before.as_secs_f64() * rate) as usize);
    let start = end.saturating_sub((2.0 * rate) as usize);
    assert!(
        end - start > rate as usize,
        "the dump is too short ({} samples) for a window {before:?} before its end",
        samples.len()
    );
    goertzel(&samples[start..end], hz, rate)
}

/// The operator's controls on room 8000 with three baresips: `conf mute` makes the others
/// stop hearing one (it still hears them); `conf lock` refuses a new participant (403) and
/// the one `conf kick` removed (the switch hangs up on it) until `conf unlock`; it rejoins
/// and is heard again.
#[test]
fn the_operator_mutes_locks_and_removes_in_room_8000() {
    let people = &PEOPLE[..3];
    let mut exts: Vec<(&str, &str, &str)> =
        people.iter().map(|(e, o, p, _)| (*e, *o, *p)).collect();
    exts.push((SIPP.0, SIPP.1, SIPP.2));
    let (switch, _range) = media_switch(&exts, "");
    let mut phones = Vec::new();
    for (ext, _, password, hz) in people {
        let dumps = switch.dir().join(format!("dump-{ext}"));
        let phone = tone_phone(&switch, ext, password, *hz, 60, "PCMU", Some(&dumps));
        phones.push((*ext, *hz, dumps, phone));
    }
    for (ext, _, _, phone) in &phones {
        dial_room(&switch, phone, ext, "8000");
    }
    let (a, b, c) = (people[0], people[1], people[2]);
    let participant = |ext: &str| {
        let room = conf_show(&switch, "8000");
        room["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["extension"] == ext)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    std::thread::sleep(Duration::from_secs(3));

    // Mute B: A and C stop hearing it.
    let said = switch.cli_ok(&["conf", "mute", "8000", b.0]);
    assert!(said.contains("muted"), "{said}");
    let t_mute = Instant::now();
    assert_eq!(participant(b.0)["muted"], true, "conf show after conf mute");
    std::thread::sleep(Duration::from_secs(3));

    // Lock: a new participant is refused; the removed one too, until unlocked.
    let said = switch.cli_ok(&["conf", "lock", "8000"]);
    assert!(said.contains("locked"), "{said}");
    let refused = sipp_call(
        &switch,
        "locked",
        SIPP.0,
        SIPP.2,
        "8000",
        &crate::common::calls::refused_scenario(switch.dir(), 403),
        &[],
    );
    assert_sipp_ok(&refused, 1, "a participant of a locked room");
    let (_, metrics) = admin_get_text(&switch, "/metrics");
    for line in [
        "tambun_room_locked{room=\"8000\"} 1\n",
        "tambun_room_refusals_total{reason=\"locked\"} 1\n",
        "tambun_room_muted{room=\"8000\"} 1\n",
    ] {
        assert!(
            metrics.contains(line),
            "/metrics lacks {line:?}:\n{metrics}"
        );
    }
    let said = switch.cli_ok(&["conf", "kick", "8000", b.0]);
    assert!(said.contains("removed"), "{said}");
    let gone = Switch::eventually(Duration::from_secs(5), || {
        !phones[1].3.has_established_call()
    });
    assert!(
        gone,
        "the switch did not hang up on {}:\n{}",
        b.0,
        phones[1].3.log_text()
    );
    assert!(participant(b.0).is_null(), "{} is still in the room", b.0);
    phones[1]
        .3
        .command_data("dial", &format!("sip:8000@{}", switch.sip));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !phones[1].3.has_established_call() && participant(b.0).is_null(),
        "{} joined the locked room",
        b.0
    );
    phones[1].3.command_data("hangup", "");
    let said = switch.cli_ok(&["conf", "unlock", "8000"]);
    assert!(said.contains("unlocked"), "{said}");
    std::thread::sleep(Duration::from_millis(300));
    dial_room(&switch, &phones[1].3, b.0, "8000");
    assert_eq!(
        participant(b.0)["muted"],
        false,
        "a rejoined participant is not muted"
    );
    std::thread::sleep(Duration::from_secs(3));

    // Errors are sentences, and exit non-zero.
    let out = switch.cli(&["conf", "mute", "8000", "1999"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not in room 8000"),
        "{err}"
    );
    let out = switch.cli(&["conf", "lock", "80a0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not a room number"),
        "{err}"
    );
    let out = switch.cli(&["conf", "mute", "8000"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an extension or --all is needed"
    );
    let out = switch.cli(&["conf", "kick", "8999", "1000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nobody is in room 8999"),
        "{err}"
    );

    let mut ended = Vec::new();
    for (_, _, _, phone) in &phones {
        phone.command_data("hangup", "");
        ended.push(Instant::now());
    }
    std::thread::sleep(Duration::from_millis(500));
    for (_, _, _, phone) in phones.iter_mut() {
        phone.stop();
    }
    // A's and C's one call: B is heard before the mute, not after it, and again at the end.
    for (i, (ext, hz, dumps, phone)) in phones.iter().enumerate() {
        let (samples, rate) = newest_dump(dumps);
        let to_end = |t: Instant| ended[i].saturating_duration_since(t);
        let others: Vec<(&str, f64)> = people
            .iter()
            .filter(|p| p.0 != *ext)
            .map(|p| (p.0, p.3))
            .collect();
        for (other, ohz) in &others {
            let end = power_before_end(&samples, rate, Duration::from_millis(300), *ohz);
            eprintln!("{ext} ({hz} Hz) hears {other} at the end: {end:.0}");
            assert!(
                end > 5e4,
                "{ext} does not hear {other} at the end: {end}\n{}",
                phone.log_text()
            );
        }
        assert!(
            power_before_end(&samples, rate, Duration::from_millis(300), *hz) < 2e3,
            "{ext} hears itself"
        );
        if *ext == b.0 {
            continue;
        }
        let before = power_before_end(
            &samples,
            rate,
            to_end(t_mute) + Duration::from_millis(300),
            b.3,
        );
        let after = power_before_end(
            &samples,
            rate,
            to_end(t_mute) - Duration::from_millis(2600),
            b.3,
        );
        let other_after = power_before_end(
            &samples,
            rate,
            to_end(t_mute) - Duration::from_millis(2600),
            if *ext == a.0 { c.3 } else { a.3 },
        );
        eprintln!(
            "{ext} hears {} before its mute {before:.0}, after {after:.0}",
            b.0
        );
        assert!(
            before > 5e4,
            "{ext} did not hear {} before the mute: {before}",
            b.0
        );
        assert!(
            after < 2e3,
            "{ext} still hears {} after the mute: {after}",
            b.0
        );
        assert!(
            other_after > 5e4,
            "{ext} hears nobody after the mute: {other_after}"
        );
    }
    let idle = wait_relay_idle(&switch, Duration::from_secs(5));
    assert_eq!(idle, (0, 0), "the relay still holds ports or sessions");
}

/// Room 8000 limited to 10: a baresip is in it, then SIPp dials it 100 times within a
/// second. Nine get in, 91 are answered 486, the room never holds more than 10; the baresip
/// stays in its call throughout, and the room is its alone again afterwards.
#[test]
fn a_hundred_joins_at_once_find_room_8000_full() {
    let range = crate::common::media::rtp_range(crate::common::media::RANGE_LEN);
    let mut switch = Switch::create(crate::common::SwitchOptions {
        extra_args: vec!["--rtp-ports".into(), range],
        ..Default::default()
    });
    let plan = switch.dialplan.join("province.toml");
    let text = std::fs::read_to_string(&plan).expect("province.toml");
    let limited = text.replacen(
        "moderators = [\"diskominfo\"]\n",
        "moderators = [\"diskominfo\"]\nmax = 10\n",
        1,
    );
    assert_ne!(limited, text, "room 8000 of province.toml has changed");
    std::fs::write(&plan, limited).unwrap();
    for (ext, opd, password, _) in &PEOPLE[..2] {
        switch.add_ext(ext, opd, password);
    }
    switch.launch();

    let (ext, _, password, hz) = PEOPLE[0];
    let mut phone = tone_phone(&switch, ext, password, hz, 30, "PCMU", None);
    dial_room(&switch, &phone, ext, "8000");

    let (crowd, _, crowd_password, _) = PEOPLE[1];
    let (tx, rx) = std::sync::mpsc::channel();
    let mut most = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            let run = sipp_call(
                &switch,
                "crowd",
                crowd,
                crowd_password,
                "8000",
                &sipp_scenario("room-crowd.xml"),
                &["-m", "100", "-r", "100", "-l", "100", "-d", "3000"],
            );
            tx.send(run).unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            let n = conf_show(&switch, "8000")["participants"]
                .as_array()
                .map_or(0, Vec::len);
            most = most.max(n);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let run = rx.recv().unwrap();
    assert_sipp_ok(&run, 100, "100 joins");
    assert_eq!(most, 10, "the room held at most {most}");
    let (_, metrics) = admin_get_text(&switch, "/metrics");
    for line in [
        "tambun_room_joins_total 10\n",
        "tambun_room_refusals_total{reason=\"full\"} 91\n",
    ] {
        assert!(
            metrics.contains(line),
            "/metrics lacks {line:?}:\n{metrics}"
        );
    }
    let alone = Switch::eventually(Duration::from_secs(5), || {
        let room = conf_show(&switch, "8000");
        room["participants"].as_array().is_some_and(|ps| {
            ps.len() == 1 && ps[0]["extension"] == ext && ps[0]["packets_in"].as_u64() > Some(200)
        })
    });
    assert!(
        alone,
        "room 8000 after the crowd: {:#}",
        conf_show(&switch, "8000")
    );
    assert!(
        phone.has_established_call(),
        "{ext} lost its call:\n{}",
        phone.log_text()
    );
    last_one_leaves(&switch, &mut phone, "8000");
}

/// With `[media] inactivity_secs = 2`, a participant that sends no RTP at all (SIPp) is hung
/// up on by the switch (its BYE, Reason 408 "media timeout"; the record says
/// `media-timeout`), while a baresip that talks stays in room 8000.
#[test]
fn a_participant_sending_no_media_is_hung_up_on() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "[media]\ninactivity_secs = 2\n",
    );
    let mut phone = tone_phone(&switch, "1000", "rahasia1000", 500.0, 30, "PCMU", None);
    dial_room(&switch, &phone, "1000", "8000");
    // SIPp joins, keys six digits (no PIN in 8000: they are only digits), sends no RTP and
    // waits for the switch's BYE.
    let silent = sipp_call(
        &switch,
        "silent",
        "2300",
        "rahasia2300",
        "8000",
        &sipp_scenario("room-pin-wrong.xml"),
        &[],
    );
    assert_sipp_ok(&silent, 1, "the silent participant");
    let messages = std::fs::read_to_string(silent.dir.join("messages.log")).unwrap_or_default();
    assert!(
        messages.contains("media timeout"),
        "the switch's BYE says why:\n{messages}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        phone.has_established_call(),
        "the talking phone was hung up on:\n{}",
        phone.log_text()
    );
    let room = conf_show(&switch, "8000");
    let exts: Vec<&str> = room["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["extension"].as_str())
        .collect();
    assert_eq!(exts, ["1000"], "{room:#}");
    phone.command_data("hangup", "");
    let records = crate::common::calls::wait_cdrs(&switch, 2);
    let silent_record = records
        .iter()
        .find(|r| r["caller"] == "2300")
        .unwrap_or_else(|| panic!("no record of 2300: {records:#?}"));
    assert_eq!(
        silent_record["disposition"], "media-timeout",
        "{silent_record:#}"
    );
    let talker = records.iter().find(|r| r["caller"] == "1000");
    assert!(
        talker.is_some_and(|r| r["disposition"] == "answered"),
        "{records:#?}"
    );
    phone.stop();
    let idle = wait_relay_idle(&switch, Duration::from_secs(5));
    assert_eq!(idle, (0, 0), "the relay still holds ports or sessions");
}

/// A moderator's keypad in room 8000: Diskominfo's 3501 (SIPp) keys `*8` and `*7` by SIP
/// INFO; the room is locked and everyone but the moderators is muted (the baresip of Setda's
/// 1000 shows muted). A Setda phone's same keys would do nothing (the proxy rig tests that).
#[test]
fn a_moderator_locks_and_mutes_room_8000_from_the_keypad() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("3501", "diskominfo", "rahasia3501"),
        ],
        "",
    );
    let mut phone = tone_phone(&switch, "1000", "rahasia1000", 500.0, 30, "PCMU", None);
    dial_room(&switch, &phone, "1000", "8000");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            // field2..field6: the digits the scenario keys, one INFO each.
            let run = sipp_call(
                &switch,
                "moderator",
                "3501",
                "rahasia3501;*;8;*;7;#",
                "8000",
                &sipp_scenario("room-pin.xml"),
                &["-d", "4000"],
            );
            tx.send(run).unwrap();
        });
        let mut room = serde_json::Value::Null;
        let done = Switch::eventually(Duration::from_secs(6), || {
            room = conf_show(&switch, "8000");
            room["locked"] == true && room["all_muted"] == true
        });
        assert!(done, "the moderator's *8 and *7: {room:#}");
        let setda = room["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["extension"] == "1000")
            .cloned()
            .unwrap_or_default();
        assert_eq!(setda["muted"], true, "{room:#}");
        let moderator = room["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["extension"] == "3501")
            .cloned()
            .unwrap_or_default();
        assert_eq!(moderator["moderator"], true, "{room:#}");
        assert_eq!(moderator["muted"], false, "{room:#}");
    });
    assert_sipp_ok(&rx.recv().unwrap(), 1, "the moderator");
    last_one_leaves(&switch, &mut phone, "8000");
}

/// A participant floods the room with SIP INFO digits (`application/dtmf-relay`, 100 of
/// them back to back, each a new transaction): every INFO is answered, the room takes at
/// most its per-participant digit rate (the rest are counted as dropped), and the baresip
/// participant stays in the room and keeps receiving the mix.
#[test]
fn a_sip_info_dtmf_flood_is_limited_and_harms_nobody() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("1001", "setda", "rahasia1001"),
        ],
        "",
    );
    let mut phone = tone_phone(&switch, "1000", "rahasia1000", 500.0, 30, "PCMU", None);
    dial_room(&switch, &phone, "1000", "8000");
    // The PIN scenario's INVITE and ACK, then 100 INFOs (CSeq 10..109, digit 1), then its end.
    let pin = std::fs::read_to_string(sipp_scenario("room-pin.xml")).expect("room-pin.xml");
    let info_at = pin
        .find("  <send retrans=\"500\">\n    <![CDATA[\n\n      INFO")
        .expect("INFO");
    let end_at = pin.find("  <pause/>").expect("pause");
    let block = &pin[info_at..pin[info_at..].find("<recv response=\"200\"/>").unwrap() + info_at]
        .replace("CSeq: 10 INFO", "CSeq: CSEQ INFO")
        .replace("Signal=[field2]", "Signal=1");
    let mut flood = pin[..info_at].to_owned();
    for k in 0..100 {
        flood.push_str(&block.replace("CSEQ", &(10 + k).to_string()));
        flood.push_str("<recv response=\"200\"/>\n");
    }
    flood.push_str(&pin[end_at..]);
    let scenario = switch.dir().join("room-info-flood.xml");
    std::fs::write(&scenario, flood).unwrap();
    let before = conf_show(&switch, "8000");
    let out_of = |room: &serde_json::Value, ext: &str, key: &str| {
        room["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["extension"] == ext)
            .and_then(|p| p[key].as_u64())
            .unwrap_or(0)
    };
    let sent_before = out_of(&before, "1000", "packets_out");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut during = serde_json::Value::Null;
    std::thread::scope(|s| {
        s.spawn(|| {
            let run = sipp_call(
                &switch,
                "flood",
                "1001",
                "rahasia1001",
                "8000",
                &scenario,
                &["-d", "2000"],
            );
            tx.send(run).unwrap();
        });
        let seen = Switch::eventually(Duration::from_secs(10), || {
            during = conf_show(&switch, "8000");
            out_of(&during, "1001", "digits_dropped") > 0
        });
        assert!(seen, "the flood's digits are not limited: {during:#}");
    });
    assert_sipp_ok(
        &rx.recv().unwrap(),
        1,
        "every INFO of the flood answered 200",
    );
    let digits = out_of(&during, "1001", "digits");
    let dropped = out_of(&during, "1001", "digits_dropped");
    assert!(
        digits <= 40 && dropped >= 50,
        "the room took {digits} digits and dropped {dropped}: {during:#}"
    );
    assert!(phone.has_established_call(), "the baresip participant left");
    let later = Switch::eventually(Duration::from_secs(3), || {
        out_of(&conf_show(&switch, "8000"), "1000", "packets_out") > sent_before + 100
    });
    assert!(later, "the mix stopped reaching the baresip participant");
    last_one_leaves(&switch, &mut phone, "8000");
}

/// A G.722 desk phone (baresip offering only G722) and a G.711 one in room 8000: the room
/// answers each in its codec (G.722 decoded to its lower band and mixed at 8 kHz), each
/// hears the other's tone and not its own (Goertzel on baresip's decoded dumps).
#[test]
fn a_g722_phone_and_a_g711_phone_hear_each_other_in_room_8000() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
    );
    let mut phones = Vec::new();
    for (ext, password, hz, codec, rate) in [
        ("1000", "rahasia1000", 500.0, "PCMU", 8000),
        // baresip names it by its sampling rate
        ("2300", "rahasia2300", 1100.0, "G722/16000/1", 16000),
    ] {
        let (dumps, phone) =
            codec_tone_phone(&switch, (ext, password), hz, (codec, rate, "g722.so"), "");
        dial_room(&switch, &phone, ext, "8000");
        phones.push((ext, hz, codec, dumps, phone));
    }
    let both = Switch::eventually(Duration::from_secs(6), || {
        let room = conf_show(&switch, "8000");
        room["talkers"].as_array().map_or(0, Vec::len) == 2
    });
    assert!(both, "both phones talk: {:#}", conf_show(&switch, "8000"));
    std::thread::sleep(Duration::from_secs(3));
    for (_, _, _, _, phone) in &phones {
        phone.command_data("hangup", "");
    }
    for (ext, hz, codec, dumps, phone) in &mut phones {
        let (tail, rate) = heard_tail(ext, codec, dumps, phone, 2.5);
        let other = if *hz == 500.0 { 1100.0 } else { 500.0 };
        let (mine, theirs) = (goertzel(&tail, *hz, rate), goertzel(&tail, other, rate));
        eprintln!("{ext} ({codec}, dump at {rate} Hz): own {mine:.0}, other {theirs:.0}");
        assert!(
            theirs > 5e4,
            "{ext} ({codec}) does not hear the other: {theirs}"
        );
        assert!(mine < 2e3, "{ext} ({codec}) hears itself: {mine}");
        phone.stop();
    }
    let idle = wait_relay_idle(&switch, Duration::from_secs(5));
    assert_eq!(idle, (0, 0), "the relay still holds ports or sessions");
}

/// Opus in a room, with libopus on the other side (baresip's `opus` module): a talking Opus
/// phone hears the G.711 one and not itself (its own encoder), a silent Opus phone hears both
/// (the shared encoding), and the G.711 phone hears the Opus talker.
#[test]
fn opus_phones_and_a_g711_phone_hear_each_other_in_room_8000() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
            ("2301", "dinkes", "rahasia2301"),
        ],
        "",
    );
    let mut phones = Vec::new();
    for (ext, password, hz, codec, rate) in [
        ("1000", "rahasia1000", 500.0, "PCMU", 8000),
        ("2300", "rahasia2300", 1100.0, "opus/48000/2", 48000),
        // Silent: a listener.
        ("2301", "rahasia2301", 0.0, "opus/48000/2", 48000),
    ] {
        let (dumps, phone) =
            codec_tone_phone(&switch, (ext, password), hz, (codec, rate, "opus.so"), "");
        dial_room(&switch, &phone, ext, "8000");
        phones.push((ext, hz, codec, dumps, phone));
    }
    let ready = Switch::eventually(Duration::from_secs(6), || {
        let room = conf_show(&switch, "8000");
        room["participants"].as_array().map_or(0, Vec::len) == 3
            && room["talkers"].as_array().map_or(0, Vec::len) == 2
    });
    assert!(
        ready,
        "three in, two talk: {:#}",
        conf_show(&switch, "8000")
    );
    std::thread::sleep(Duration::from_secs(3));
    let room = conf_show(&switch, "8000");
    for (_, _, _, _, phone) in &phones {
        phone.command_data("hangup", "");
    }
    for (ext, hz, codec, dumps, phone) in &mut phones {
        let (tail, rate) = heard_tail(ext, codec, dumps, phone, 2.5);
        let (low, high) = (goertzel(&tail, 500.0, rate), goertzel(&tail, 1100.0, rate));
        eprintln!("{ext} ({codec}, dump at {rate} Hz): 500 Hz {low:.0}, 1100 Hz {high:.0}");
        if *hz == 500.0 {
            assert!(high > 5e4, "{ext} does not hear the Opus talker: {high}");
            assert!(low < 2e3, "{ext} hears itself: {low}");
        } else if *hz == 1100.0 {
            assert!(
                low > 5e4,
                "{ext} (Opus) does not hear the G.711 phone: {low}"
            );
            assert!(high < 2e3, "{ext} (Opus) hears itself: {high}");
        } else {
            assert!(
                low > 5e4 && high > 5e4,
                "{ext} (Opus listener) does not hear both: {low} {high}"
            );
        }
        phone.stop();
    }
    // Nothing the Opus phones sent was refused; the operator sees who speaks what.
    let mut codecs = Vec::new();
    for p in room["participants"].as_array().unwrap() {
        assert_eq!(p["refused"], 0, "{p:#}");
        codecs.push(p["codec"].as_str().unwrap_or_default().to_owned());
    }
    codecs.sort();
    assert_eq!(codecs, ["PCMU", "opus", "opus"], "{room:#}");
    let idle = wait_relay_idle(&switch, Duration::from_secs(5));
    assert_eq!(idle, (0, 0), "the relay still holds ports or sessions");
}
