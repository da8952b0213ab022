//! `tambun conf`: the conference rooms of the running switch, asked of its admin API
//! (`GET /api/conf[?room=N]`): `list` (rooms with participants and talkers) and `show ROOM`
//! (its participants: extension, OPD, moderator, talking, muted, joined).

use clap::{Args, Subcommand};
use serde::Deserialize;

use super::http;
use super::output::table;
use super::wib::wib;
use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum ConfCommand {
    /// The rooms that have participants now
    List(ListArgs),
    /// The participants of one room
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The room's number (from the dialplan, e.g. 8000)
    room: String,
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

/// A room as the admin API reports it.
#[derive(Debug, Deserialize)]
struct Room {
    room: String,
    #[serde(default)]
    participants: Vec<Participant>,
    #[serde(default)]
    talkers: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Participant {
    extension: String,
    #[serde(default)]
    opd: Option<String>,
    #[serde(default)]
    moderator: bool,
    #[serde(default)]
    joined_at_ms: i64,
    #[serde(default)]
    talking: bool,
    #[serde(default)]
    muted: bool,
    #[serde(default)]
    self_muted: bool,
    #[serde(default)]
    packets_in: u64,
    #[serde(default)]
    packets_out: u64,
}

pub(super) fn run(global: &GlobalArgs, cmd: ConfCommand) -> anyhow::Result<()> {
    let admin = global.admin();
    match cmd {
        ConfCommand::List(args) => {
            let Some(rooms) =
                http::admin_list::<Room>(admin, "/api/conf", args.json, "a room list")?
            else {
                return Ok(());
            };
            if rooms.is_empty() {
                println!("no conference room has participants");
                return Ok(());
            }
            let mut t = table(&["ROOM", "PARTICIPANTS", "TALKING"]);
            for r in rooms {
                let talking = if r.talkers.is_empty() {
                    "-".to_string()
                } else {
                    r.talkers.join(", ")
                };
                t.add_row(vec![r.room, r.participants.len().to_string(), talking]);
            }
            println!("{t}");
        }
        ConfCommand::Show(args) => {
            if !args.room.bytes().all(|b| b.is_ascii_digit()) || args.room.is_empty() {
                anyhow::bail!("{:?} is not a room number (digits, e.g. 8000)", args.room);
            }
            let path = format!("/api/conf?room={}", args.room);
            let response = http::admin_get(admin, &path)?;
            let body = String::from_utf8_lossy(&response.body);
            if response.status == 404 {
                anyhow::bail!("nobody is in room {} now", args.room);
            }
            if !(200..300).contains(&response.status) {
                anyhow::bail!(
                    "the switch's admin API at {admin} answered {}: {}",
                    response.status,
                    body.trim()
                );
            }
            let mut rooms: Vec<serde_json::Value> = serde_json::from_str(&body).map_err(|e| {
                anyhow::anyhow!(
                    "the switch's admin API at {admin} sent something other than a room: {e}"
                )
            })?;
            let room = rooms.pop().unwrap_or_default();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&room)?);
                return Ok(());
            }
            let room: Room = serde_json::from_value(room)?;
            let mut t = table(&[
                "EXTENSION",
                "OPD",
                "MODERATOR",
                "TALKING",
                "MUTED",
                "JOINED (WIB)",
                "RTP IN",
                "RTP OUT",
            ]);
            let yes = |b: bool| if b { "yes" } else { "-" }.to_string();
            let n = room.participants.len();
            for p in room.participants {
                let muted = match (p.muted, p.self_muted) {
                    (true, _) => "by moderator",
                    (false, true) => "self (*6)",
                    _ => "-",
                };
                t.add_row(vec![
                    p.extension,
                    p.opd.unwrap_or_else(|| "-".into()),
                    yes(p.moderator),
                    yes(p.talking),
                    muted.to_string(),
                    wib(p.joined_at_ms),
                    p.packets_in.to_string(),
                    p.packets_out.to_string(),
                ]);
            }
            println!("room {}: {n} participant(s)", room.room);
            println!("{t}");
        }
    }
    Ok(())
}
