//! Room 8000 of the shipped plan with real phones (issue 12): baresip participants from four
//! OPDs each send a tone of their own frequency (aufile) and dump what they hear (sndfile);
//! the switch answers for the room and mixes. Each one's received audio holds the others'
//! frequencies and not its own (Goertzel on the dumped WAV); the call records name the room;
//! when everyone has hung up the relay holds no port.

use std::path::Path;
use std::time::Duration;

use crate::common::baresip::{account, Baresip};
use crate::common::calls::{assert_sipp_ok, sipp_call};
use crate::common::media::{media_switch, wait_relay_idle};
use crate::common::peers::sipp_scenario;
use crate::common::Switch;

const PEOPLE: [(&str, &str, &str, f64); 4] = [
    ("1000", "setda", "rahasia1000", 500.0),
    ("2300", "dinkes", "rahasia2300", 800.0),
    ("3501", "diskominfo", "rahasia3501", 1100.0),
    ("1400", "bappedalitbang", "rahasia1400", 1700.0),
];

/// A 16-bit mono 8 kHz WAV of a tone at `hz` lasting `secs`.
fn tone_wav(path: &Path, hz: f64, secs: u32) {
    let samples = 8000 * secs;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + samples * 2).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    for v in [8000u32, 16000] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    for v in [2u16, 16] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(samples * 2).to_le_bytes());
    for i in 0..samples {
        let v = (6000.0 * (std::f64::consts::TAU * hz * f64::from(i) / 8000.0).sin()) as i16;
        w.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, w).expect("write tone WAV");
}

/// The samples of a 16-bit PCM WAV (the data chunk).
fn wav_samples(path: &Path) -> Vec<i16> {
    let b = std::fs::read(path).unwrap_or_default();
    let Some(at) = b.windows(4).position(|w| w == b"data") else {
        return Vec::new();
    };
    b[at + 8..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Power at `hz` (Goertzel, sample rate `rate`), normalised by length.
fn goertzel(samples: &[i16], hz: f64, rate: f64) -> f64 {
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
fn four_baresips_in_room_8000_hear_each_other_and_not_themselves() {
    let exts: Vec<(&str, &str, &str)> = PEOPLE.iter().map(|(e, o, p, _)| (*e, *o, *p)).collect();
    let (switch, _range) = media_switch(&exts, "");
    let mut phones = Vec::new();
    for (ext, _, password, hz) in PEOPLE {
        let tone = switch.dir().join(format!("tone-{ext}.wav"));
        tone_wav(&tone, hz, 30);
        let dumps = switch.dir().join(format!("dump-{ext}"));
        std::fs::create_dir_all(&dumps).unwrap();
        let audio = format!(
            "audio_player\t\talsa,null\n\
             audio_alert\t\talsa,null\n\
             audio_source\t\taufile,{}\n\
             audio_buffer\t\t20-160\n\
             snd_path\t\t{}\n\
             module\t\t\taufile.so\n\
             module\t\t\talsa.so\n\
             module\t\t\tsndfile.so\n",
            tone.display(),
            dumps.display()
        );
        let acc = account(&switch, ext, password, ";audio_codecs=PCMU,PCMA;ptime=20");
        phones.push((
            ext,
            hz,
            dumps,
            Baresip::start_registered(switch.dir(), ext, &acc, Some(&audio)),
        ));
    }
    for (ext, _, _, phone) in &phones {
        let answer = phone.command_data("dial", &format!("sip:8000@{}", switch.sip));
        let up = Switch::eventually(Duration::from_secs(10), || phone.has_established_call());
        assert!(
            up,
            "{ext} is not in room 8000 (dial: {answer}):\n{}",
            phone.log_text()
        );
    }
    std::thread::sleep(Duration::from_secs(4));
    let calls = switch.cli_ok(&["calls", "--json"]);
    // The operator's view: the four, all talking (each sends its tone).
    let show = switch.cli_ok(&["conf", "show", "8000", "--json"]);
    let room: serde_json::Value = serde_json::from_str(&show).expect("conf show --json is JSON");
    let mut in_room: Vec<&str> = room["participants"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["extension"].as_str()).collect())
        .unwrap_or_default();
    in_room.sort_unstable();
    let mut want: Vec<&str> = PEOPLE.iter().map(|p| p.0).collect();
    want.sort_unstable();
    assert_eq!(in_room, want, "{show}");
    let talkers = room["talkers"].as_array().map_or(0, Vec::len);
    assert_eq!(talkers, 4, "everyone sends a tone: {show}");
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
    let list = switch.cli_ok(&["conf", "list"]);
    assert!(list.contains("8000"), "{list}");
    for (_, _, _, phone) in &phones {
        phone.command_data("hangup", "");
    }
    std::thread::sleep(Duration::from_millis(500));
    for (_, _, _, phone) in phones.iter_mut() {
        phone.stop();
    }
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
            .map(|(_, _, _, f)| format!("{f} Hz {:.0}", goertzel(tail, *f, rate)))
            .collect();
        eprintln!("{ext} ({hz} Hz) hears: {}", powers.join(", "));
        for (other, _, _, ohz) in PEOPLE {
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
    let tone = switch.dir().join("tone.wav");
    tone_wav(&tone, 700.0, 30);
    let audio = format!(
        "audio_player\t\talsa,null\n\
         audio_alert\t\talsa,null\n\
         audio_source\t\taufile,{}\n\
         module\t\t\taufile.so\n\
         module\t\t\talsa.so\n",
        tone.display()
    );
    let acc = account(
        &switch,
        "3501",
        "rahasia3501",
        ";audio_codecs=PCMU;ptime=20",
    );
    let mut moderator = Baresip::start_registered(switch.dir(), "3501", &acc, Some(&audio));
    moderator.command_data("dial", &format!("sip:8001@{}", switch.sip));
    let up = Switch::eventually(Duration::from_secs(10), || moderator.has_established_call());
    assert!(
        up,
        "the moderator is not in room 8001:\n{}",
        moderator.log_text()
    );

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

    moderator.command_data("hangup", "");
    let gone = Switch::eventually(Duration::from_secs(5), || {
        conf_show(&switch, "8001").is_null()
    });
    assert!(gone, "room 8001 still has participants");
    moderator.stop();
    let idle = wait_relay_idle(&switch, Duration::from_secs(5));
    assert_eq!(idle, (0, 0), "the relay still holds ports or sessions");
}
