//! `tambun dialplan reload`: asks the running switch to reload its dialplan files
//! (`POST /api/dialplan/reload`). The switch answers 200 `{"opds": N}`, or 422
//! `{"errors": ["file:line: reason", …]}` when it refused the new plan and kept the old one.

use anyhow::{anyhow, bail};
use serde::Deserialize;

use super::http;
use super::GlobalArgs;

#[derive(Debug, Deserialize)]
struct Reloaded {
    opds: u64,
}

#[derive(Debug, Deserialize)]
struct Refused {
    errors: Vec<String>,
}

pub(super) fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    let admin = global.admin();
    let response = http::admin_post(admin, "/api/dialplan/reload")?;
    let body = String::from_utf8_lossy(&response.body);
    match response.status {
        200 => {
            let ok: Reloaded = serde_json::from_str(&body).map_err(|e| {
                anyhow!("the switch's admin API at {admin} reloaded, but its answer is odd: {e}")
            })?;
            println!("dialplan reloaded: {} OPDs", ok.opds);
            Ok(())
        }
        422 => {
            let refused: Refused = serde_json::from_str(&body).map_err(|e| {
                anyhow!(
                    "the switch refused the dialplan and keeps the previous one, but its list of \
                     errors is unreadable ({e}): {}",
                    body.trim()
                )
            })?;
            let mut message =
                String::from("the dialplan was refused; the switch keeps the previous one:");
            for error in &refused.errors {
                message.push_str("\n  ");
                message.push_str(error);
            }
            bail!(message)
        }
        status => bail!(
            "the switch's admin API at {admin} answered {status}: {}",
            body.trim()
        ),
    }
}
