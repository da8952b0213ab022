//! `tambun calls`: the calls in progress, asked of the running switch's admin API
//! (`GET /api/calls`).

use clap::Args;
use serde::Deserialize;

use super::http;
use super::output::table;
use super::wib::{minutes_seconds, wib};
use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct CallsArgs {
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

/// One live call as the admin API reports it.
#[derive(Debug, Deserialize)]
struct LiveCall {
    #[serde(default)]
    call_id: String,
    #[serde(default)]
    caller: String,
    #[serde(default)]
    callee: Option<String>,
    #[serde(default)]
    dialled: String,
    #[serde(default)]
    caller_opd: Option<String>,
    #[serde(default)]
    callee_opd: Option<String>,
    #[serde(default)]
    route: String,
    /// `ringing` or `answered`.
    #[serde(default)]
    state: String,
    #[serde(default)]
    started_at_ms: i64,
    #[serde(default)]
    answered_at_ms: Option<i64>,
    /// Talk time so far (0 while ringing).
    #[serde(default)]
    duration_secs: Option<f64>,
    /// Browser legs, if any.
    #[serde(default)]
    webrtc: Vec<BrowserLeg>,
    /// `opus/PCMU` when the relay transcodes.
    #[serde(default)]
    transcoding: Option<String>,
}

/// A browser leg of a call, as the admin API reports it.
#[derive(Debug, Deserialize)]
struct BrowserLeg {
    #[serde(default)]
    side: String,
    #[serde(default)]
    dtls: String,
    #[serde(default)]
    srtp_profile: Option<String>,
    #[serde(default)]
    packets_to_browser: u64,
    #[serde(default)]
    packets_from_browser: u64,
    #[serde(default)]
    loss_from_browser: Option<f64>,
    #[serde(default)]
    rtt_ms: Option<f64>,
}

impl BrowserLeg {
    /// `caller webrtc connected AEAD_AES_256_GCM ↑250 ↓251 loss 0.0% rtt 0.4 ms`.
    fn summary(&self) -> String {
        let mut s = format!(
            "{} webrtc {} {} tx {} rx {}",
            self.side,
            self.dtls,
            self.srtp_profile.as_deref().unwrap_or("-"),
            self.packets_to_browser,
            self.packets_from_browser
        );
        if let Some(l) = self.loss_from_browser {
            s.push_str(&format!(" loss {:.1}%", l * 100.0));
        }
        if let Some(r) = self.rtt_ms {
            s.push_str(&format!(" rtt {r:.1} ms"));
        }
        s
    }
}

pub(super) fn run(global: &GlobalArgs, args: CallsArgs) -> anyhow::Result<()> {
    let admin = global.admin();
    let Some(calls) = http::admin_list::<LiveCall>(admin, "/api/calls", args.json, "a call list")?
    else {
        return Ok(());
    };
    if calls.is_empty() {
        println!("no calls in progress");
        return Ok(());
    }
    let dash = |s: Option<String>| s.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into());
    let mut t = table(&[
        "STARTED (WIB)",
        "CALLER",
        "CALLER OPD",
        "DIALLED",
        "CALLEE",
        "CALLEE OPD",
        "STATE",
        "ANSWERED (WIB)",
        "DURATION",
        "ROUTE",
        "MEDIA",
        "CALL-ID",
    ]);
    let n = calls.len();
    for c in calls {
        t.add_row(vec![
            wib(c.started_at_ms),
            c.caller,
            dash(c.caller_opd),
            c.dialled,
            dash(c.callee),
            dash(c.callee_opd),
            c.state,
            c.answered_at_ms.map_or_else(|| "-".into(), wib),
            minutes_seconds((c.duration_secs.unwrap_or(0.0) * 1000.0) as i64),
            c.route,
            if let Some(t) = &c.transcoding {
                format!("rtp, transcoded {t}")
            } else if c.webrtc.is_empty() {
                "rtp".to_string()
            } else {
                c.webrtc
                    .iter()
                    .map(BrowserLeg::summary)
                    .collect::<Vec<_>>()
                    .join("\n")
            },
            c.call_id,
        ]);
    }
    println!("{t}");
    println!("{n} call(s) in progress");
    Ok(())
}
