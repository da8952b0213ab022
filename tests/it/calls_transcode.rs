//! Transcoding with real phones: an Opus-only baresip calls a PCMU-only baresip through the
//! switch. They share no codec, so the switch offers the callee G.711 too, answers the caller
//! in Opus, and the relay transcodes; each phone hears the other's tone and speaks its own
//! codec. A second call is held and resumed while transcoding: each re-offer reaches the
//! other phone in its own codec, a keyed digit (RFC 4733) crosses, and `tambun calls` says
//! the call is transcoded.

use std::time::Duration;

use crate::common::baresip::Baresip;
use crate::common::media::media_switch;
use crate::common::Switch;
use crate::conference_baresip::{codec_tone_phone, goertzel, heard_tail};

#[test]
fn an_opus_phone_and_a_g711_phone_talk_through_the_relays_transcoder() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
    );
    let mut phones = Vec::new();
    for (ext, password, hz, codec, rate, extra) in [
        (
            "2300",
            "rahasia2300",
            500.0,
            "PCMU",
            8000,
            ";answermode=auto",
        ),
        ("1000", "rahasia1000", 1100.0, "opus/48000/2", 48000, ""),
    ] {
        let (dumps, phone) = codec_tone_phone(
            &switch,
            (ext, password),
            hz,
            (codec, rate, "opus.so"),
            extra,
        );
        phones.push((ext, hz, codec, dumps, phone));
    }
    let caller = &phones[1].4;
    caller.command_data("dial", &format!("sip:2300@{}", switch.sip));
    let up = Switch::eventually(Duration::from_secs(10), || {
        caller.has_established_call() && phones[0].4.has_established_call()
    });
    assert!(
        up,
        "the call did not come up:\n{}\n{}\n{}",
        caller.log_text(),
        phones[0].4.log_text(),
        switch.log_text()
    );
    std::thread::sleep(Duration::from_secs(4));
    for (_, _, _, _, phone) in &phones {
        phone.command_data("hangup", "");
    }
    for (ext, hz, codec, dumps, phone) in &phones {
        let (tail, rate) = heard_tail(ext, codec, dumps, phone, 3.0);
        let other = if *hz == 500.0 { 1100.0 } else { 500.0 };
        let (mine, theirs) = (goertzel(&tail, *hz, rate), goertzel(&tail, other, rate));
        eprintln!("{ext} ({codec}, dump at {rate} Hz): own {mine:.0}, other {theirs:.0}");
        assert!(
            theirs > 5e4,
            "{ext} ({codec}) does not hear the other: {theirs}"
        );
        assert!(mine < 2e3, "{ext} ({codec}) hears itself: {mine}");
    }
    // A second call: hold and resume while transcoding.
    let up = Switch::eventually(Duration::from_secs(5), || {
        !caller.has_established_call() && !phones[0].4.has_established_call()
    });
    assert!(up, "the first call did not end");
    let caller = &phones[1].4;
    caller.command_data("dial", &format!("sip:2300@{}", switch.sip));
    let up = Switch::eventually(Duration::from_secs(10), || {
        caller.has_established_call() && phones[0].4.has_established_call()
    });
    assert!(up, "the second call did not come up");
    // Hold and resume from the Opus phone: its re-INVITEs reach the PCMU phone offering
    // PCMU (a PCMU-only phone refuses an Opus-only offer with 488), and the answers come
    // back in Opus, which the caller applies.
    let callee = &phones[0].4;
    let updates = |p: &Baresip| p.log_text().matches("stream: update 'audio'").count();
    let answers = updates(caller);
    for (n, command) in [(1, "hold"), (2, "resume")] {
        caller.command_data(command, "");
        let through = Switch::eventually(Duration::from_secs(5), || {
            callee.log_text().matches("call: got re-INVITE").count() == n
                && updates(caller) == answers + n
        });
        assert!(
            through,
            "{command}: the callee's answer did not reach the caller:\n{}\n{}",
            caller.log_text(),
            callee.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        !caller.log_text().contains("audio stream is disabled")
            && !callee.log_text().contains("audio stream is disabled"),
        "a phone was given SDP without its codec:\n{}\n{}",
        caller.log_text(),
        callee.log_text()
    );
    std::thread::sleep(Duration::from_secs(4));
    let calls = String::from_utf8_lossy(&switch.cli(&["calls", "--json"]).stdout).to_string();
    assert!(calls.contains("\"transcoding\":\"opus/PCMU\""), "{calls}");
    // Both phones go on sending to the relay after the resume (baresip's sound dump restarts
    // empty after a re-INVITE, even without transcoding, so it cannot tell what was heard).
    let packets = || -> Vec<u64> {
        let out = switch.cli(&["calls", "--json"]).stdout;
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        v[0]["media"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["packets"].as_u64().unwrap_or(0))
            .collect()
    };
    let before = packets();
    std::thread::sleep(Duration::from_secs(2));
    let after = packets();
    assert!(
        before.len() == 2 && after.iter().zip(&before).all(|(a, b)| *a >= b + 50),
        "media stopped after the resume: {before:?} then {after:?}"
    );
    // A digit keyed on the Opus phone (RFC 4733) reaches the PCMU phone through the
    // transcoder, with its payload type and clock.
    caller.command_data("sndcode", "5");
    let digit = Switch::eventually(Duration::from_secs(5), || {
        callee.log_text().contains("received event: '5' (end=1)")
    });
    assert!(digit, "the digit did not cross:\n{}", callee.log_text());
    caller.command_data("hangup", "");
    for (_, _, _, _, phone) in &mut phones {
        phone.stop();
    }
}
