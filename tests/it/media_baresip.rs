//! Two baresip phones (1000 setda, 2300 dinkes) talk through the relay: both send a generated
//! tone (aufile), the switch anchors the media. While the call runs, `tambun calls --json`
//! shows both directions of stream 0 carrying packets and growing, each latched to the
//! sending baresip's own RTP port; each baresip received about as many packets as the relay
//! forwarded towards it, and says it receives from a relay port (no audio went around the
//! relay). After the hangup the relay holds no port and the call record is answered.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::baresip::{account, Baresip};
use crate::common::calls::{assert_cdr, one_cdr};
use crate::common::media::{
    counter, media_switch, range_bounds, stream_counters, wait_relay_idle, write_tone_wav,
};
use crate::common::Switch;

/// A registered baresip for `ext` that auto-answers with PCMU at 20 ms and `audio`.
fn phone(switch: &Switch, ext: &str, password: &str, audio: &str) -> Baresip {
    let account = account(
        switch,
        ext,
        password,
        ";answermode=auto;audio_codecs=PCMU;ptime=20",
    );
    Baresip::start_registered(switch.dir(), ext, &account, Some(audio))
}

/// The `rtp_ports` range of a baresip, from the config the harness wrote.
fn rtp_ports(phone: &Baresip) -> (u16, u16) {
    let config = std::fs::read_to_string(phone.dir.join("config")).expect("baresip config");
    let line = config
        .lines()
        .find_map(|l| l.strip_prefix("rtp_ports"))
        .expect("rtp_ports in the baresip config");
    range_bounds(line.trim())
}

/// The latched source of an entry, as an address.
fn source(entry: &Option<Value>) -> Option<SocketAddr> {
    entry.as_ref()?.get("source")?.as_str()?.parse().ok()
}

#[test]
fn baresip_audio_flows_both_ways_through_the_relay() {
    let (switch, range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
    );
    let tone = switch.dir().join("tone.wav");
    write_tone_wav(&tone, 30);
    let audio = format!(
        "audio_player\t\talsa,null\n\
         audio_alert\t\talsa,null\n\
         audio_source\t\taufile,{}\n\
         audio_buffer\t\t20-160\n\
         rtp_stats\t\tyes\n\
         module\t\t\taufile.so\n\
         module\t\t\talsa.so\n",
        tone.display()
    );
    let mut callee = phone(&switch, "2300", "rahasia2300", &audio);
    let mut caller = phone(&switch, "1000", "rahasia1000", &audio);

    caller.dial_established(&format!("sip:2300@{}", switch.sip), &callee);

    // both directions carry packets, and keep growing for the whole call (~3 s)
    let mut last = (0u64, 0u64);
    let mut history = Vec::new();
    let started = Instant::now();
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(if round == 0 { 300 } else { 800 }));
        let ab = stream_counters(&switch, 0, "caller->callee");
        let ba = stream_counters(&switch, 0, "callee->caller");
        let now = (counter(&ab, "packets"), counter(&ba, "packets"));
        history.push((started.elapsed(), now, ab.clone(), ba.clone()));
        assert!(
            now.0 > last.0 && now.1 > last.1,
            "relay packets did not grow in both directions (round {round}): {history:#?}\n{}",
            switch.cli_ok(&["calls", "--json"])
        );
        last = now;
        if round == 3 {
            // Latched to each baresip's own RTP socket: they send to the relay. (baresip picks
            // its port in the configured range when it can; on a busy machine it may fall back
            // to another, so the two sources are checked to be distinct phones, not ranges.)
            let (a_lo, a_hi) = rtp_ports(&caller);
            let (b_lo, b_hi) = rtp_ports(&callee);
            let a_src = source(&ab).expect("caller->callee has a source");
            let b_src = source(&ba).expect("callee->caller has a source");
            assert_ne!(a_src, b_src, "both directions latched to one source");
            if !(a_lo..=a_hi).contains(&a_src.port()) || !(b_lo..=b_hi).contains(&b_src.port()) {
                eprintln!(
                    "note: baresip sent from {a_src} / {b_src}, outside its configured RTP ports \
                     {a_lo}-{a_hi} / {b_lo}-{b_hi}"
                );
            }
            for (dir, e) in [("caller->callee", &ab), ("callee->caller", &ba)] {
                assert_eq!(counter(e, "dropped_foreign"), 0, "{dir}: {e:?}");
            }
        }
    }
    // ~50 packets/s each way over the ~2.7 s sampled
    assert!(
        last.0 >= 80 && last.1 >= 80,
        "too few packets through the relay for a 20 ms ptime: {history:#?}"
    );
    let (first, end) = range_bounds(&range);

    // the last counters, just before the hangup
    let sampled = Instant::now();
    let ab = counter(&stream_counters(&switch, 0, "caller->callee"), "packets");
    let ba = counter(&stream_counters(&switch, 0, "callee->caller"), "packets");
    caller.command_data("hangup", "");
    let gap = sampled.elapsed();
    // baresip prints its RTP totals when the call ends
    let mut totals = (None, None);
    Switch::eventually(Duration::from_secs(5), || {
        totals = (
            rtp_totals(&caller.log_text()),
            rtp_totals(&callee.log_text()),
        );
        totals.0.is_some() && totals.1.is_some()
    });
    let (Some((a_tx, a_rx)), Some((b_tx, b_rx))) = totals else {
        panic!(
            "baresip printed no RTP totals after the hangup
caller:\n{}\ncallee:\n{}",
            caller.log_text(),
            callee.log_text()
        );
    };
    // what each phone sent and received is what the relay forwarded (plus the packets of the
    // last `gap`): no audio went around the relay
    let slack = 50 * gap.as_millis() as u64 / 1000 + 15;
    for (what, relay, counts) in [
        ("caller sent / callee received", ab, [a_tx, b_rx]),
        ("callee sent / caller received", ba, [b_tx, a_rx]),
    ] {
        for n in counts {
            assert!(
                relay <= n + 2 && n <= relay + slack,
                "{what}: baresip counted {n} packets, the relay forwarded {relay} \
                 (sampled {gap:?} before the hangup)"
            );
        }
    }
    // and each baresip says its audio came from a relay port
    for (who, phone) in [("caller", &caller), ("callee", &callee)] {
        let log = phone.log_text();
        let from: Option<SocketAddr> = log
            .lines()
            .find_map(|l| l.split("receiving from ").nth(1))
            .and_then(|a| a.trim().parse().ok());
        assert!(
            from.is_some_and(|a| (first..=end).contains(&a.port())),
            "the {who} receives RTP from {from:?}, not from the relay range {range}"
        );
    }
    let hung_up = Switch::eventually(Duration::from_secs(5), || !callee.has_established_call());
    assert!(hung_up, "the callee still lists the call after the hangup");
    assert_eq!(
        wait_relay_idle(&switch, Duration::from_secs(3)),
        (0, 0),
        "relay ports left after the call (range {first}-{end})"
    );
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("callee", "2300"),
            ("disposition", "answered"),
        ],
    );
    // The record carries what the relay counted, both directions.
    let media = row
        .get("media")
        .unwrap_or_else(|| panic!("no media totals in {row:#}"));
    for dir in ["packets_a2b", "packets_b2a"] {
        let n = media.get(dir).and_then(|v| v.as_u64()).unwrap_or(0);
        assert!(n >= 80, "{dir} = {n} in the call record: {row:#}");
    }
    caller.stop();
    callee.stop();
}

/// baresip's end-of-call RTP totals: (transmitted, received) packets, from the
/// `packets:  TX  RX` line of its audio statistics.
fn rtp_totals(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().rev().find(|l| l.starts_with("packets:"))?;
    let mut n = line.split_whitespace().skip(1).map(|v| v.parse().ok());
    Some((n.next()??, n.next()??))
}
