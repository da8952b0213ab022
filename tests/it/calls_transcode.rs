//! Transcoding with real phones: an Opus-only baresip calls a PCMU-only baresip through the
//! switch. They share no codec, so the switch offers the callee G.711 too, answers the caller
//! in Opus, and the relay transcodes; each phone hears the other's tone and speaks its own
//! codec. Without a codec the relay can bridge, the call is refused as before.

use std::time::Duration;

use crate::common::baresip::{account, Baresip};
use crate::common::media::media_switch;
use crate::common::Switch;
use crate::conference_baresip::{goertzel, newest_dump, tone_audio, tone_wav_channels};

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
        let tone = switch.dir().join(format!("tone-{ext}.wav"));
        tone_wav_channels(&tone, hz, 30, rate, if rate == 48000 { 2 } else { 1 });
        let dumps = switch.dir().join(format!("dump-{ext}"));
        std::fs::create_dir_all(&dumps).unwrap();
        let audio = tone_audio(&tone, Some(&dumps)) + "module\t\t\topus.so\n";
        let acc = account(
            &switch,
            ext,
            password,
            &format!(";audio_codecs={codec};ptime=20{extra}"),
        );
        let phone = Baresip::start_registered(switch.dir(), ext, &acc, Some(&audio));
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
    eprintln!(
        "CALLS {}",
        String::from_utf8_lossy(&switch.cli(&["calls", "--json"]).stdout)
    );
    eprintln!("CALLER {}", caller.log_text());
    for (_, _, _, _, phone) in &phones {
        phone.command_data("hangup", "");
    }
    for (ext, hz, codec, dumps, phone) in &mut phones {
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
            samples.len() as f64 > 3.0 * rate,
            "{ext} ({codec}) heard {} samples at {rate} Hz:\n{}",
            samples.len(),
            phone.log_text()
        );
        let tail = &samples[samples.len() - (2.0 * rate) as usize..];
        let other = if *hz == 500.0 { 1100.0 } else { 500.0 };
        let (mine, theirs) = (goertzel(tail, *hz, rate), goertzel(tail, other, rate));
        eprintln!("{ext} ({codec}, dump at {rate} Hz): own {mine:.0}, other {theirs:.0}");
        assert!(
            theirs > 5e4,
            "{ext} ({codec}) does not hear the other: {theirs}"
        );
        assert!(mine < 2e3, "{ext} ({codec}) hears itself: {mine}");
        phone.stop();
    }
}
