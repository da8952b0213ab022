//! Two baresip phones in two OPDs (1000 setda, 2300 dinkes) call each other through the
//! switch: 1000 dials 2300 by its extension, 2300 answers by itself, 1000 hangs up after
//! about 2 s, and the call record shows an answered call between the two OPDs. Media may go
//! direct (no relay yet): RTP is not checked.

use std::time::Duration;

use crate::common::baresip::Baresip;
use crate::common::calls::{assert_cdr, one_cdr};
use crate::common::Switch;

#[test]
fn baresip_setda_calls_baresip_dinkes() {
    let switch = Switch::start_with_extensions(&[
        ("1000", "setda", "rahasia1000"),
        ("2300", "dinkes", "rahasia2300"),
    ]);
    let mut callee = Baresip::registered(&switch, "2300", "rahasia2300", ";answermode=auto");
    let mut caller = Baresip::registered(&switch, "1000", "rahasia1000", "");

    // established on both sides: baresip lists the call with its duration once answered
    caller.dial_established(&format!("sip:2300@{}", switch.sip), &callee);
    std::thread::sleep(Duration::from_secs(2));
    caller.command_data("hangup", "");

    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("dialled", "2300"),
            ("callee", "2300"),
            ("caller_opd", "setda"),
            ("callee_opd", "dinkes"),
            ("disposition", "answered"),
            ("sip_status", "200"),
        ],
    );
    let duration = row["duration_ms"].as_i64().unwrap_or(0);
    assert!(
        (1000..10_000).contains(&duration),
        "duration {duration} ms for a call held ~2 s: {row:#}"
    );
    caller.stop();
    callee.stop();
}
