//! `tambun conf`: the conference rooms of the running switch, asked of its admin API
//! (`GET /api/conf[?room=N]`): `list` (rooms with participants and talkers) and `show ROOM`
//! (its participants: extension, OPD, moderator, talking, muted, joined); and the
//! operator's controls, `POST /api/conf/ROOM`: `mute`/`unmute` (one extension, or `--all`
//! but the moderators), `kick` (the switch hangs up on the extension), `lock`/`unlock`
//! (a locked room lets only its moderators join).

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
    /// Mute a participant (or --all but the moderators): the others stop hearing it
    Mute(MuteArgs),
    /// Unmute a participant (or --all)
    Unmute(MuteArgs),
    /// Remove an extension from the room: the switch hangs up on it
    Kick(KickArgs),
    /// Lock the room: only its moderators may join while it is locked
    Lock(LockArgs),
    /// Unlock the room
    Unlock(LockArgs),
}

#[derive(Debug, Args)]
pub struct MuteArgs {
    /// The room's number (e.g. 8000)
    room: String,
    /// The participant's extension
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    extension: Option<String>,
    /// Everyone in the room but its moderators (and, until unmuted, who joins)
    #[arg(long)]
    all: bool,
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct KickArgs {
    /// The room's number (e.g. 8000)
    room: String,
    /// The participant's extension
    extension: String,
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The room's number (e.g. 8000)
    room: String,
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

/// What the admin API says an action did.
#[derive(Debug, Deserialize)]
struct ActionDone {
    room: String,
    affected: usize,
    locked: bool,
    all_muted: bool,
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
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    all_muted: bool,
    #[serde(default)]
    video: Option<Video>,
}

/// A room's video forwarding, as the admin API reports it.
#[derive(Debug, Deserialize)]
struct Video {
    publishers: u64,
    subscriptions: u64,
    last_n: u64,
    forwarded: u64,
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
    codec: String,
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

/// A room number as the operator typed it, or the sentence why it is not one.
fn room_number(room: &str) -> anyhow::Result<&str> {
    if room.is_empty() || !room.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("{room:?} is not a room number (digits, e.g. 8000)");
    }
    Ok(room)
}

/// An extension as the operator typed it, or the sentence why it is not one.
fn extension(ext: &str) -> anyhow::Result<crate::proxy::rooms::Who> {
    ext.parse()
        .map_err(|e| anyhow::anyhow!("{ext:?} is not an extension: {e}"))
}

/// Sends `action` for `room` and prints what it did.
fn act(
    admin: std::net::SocketAddr,
    room: &str,
    action: &crate::proxy::rooms::RoomAction,
    json: bool,
) -> anyhow::Result<()> {
    let room = room_number(room)?;
    let body = serde_json::to_string(action)?;
    let response = http::admin_post_json(admin, &format!("/api/conf/{room}"), &body)?;
    let text = String::from_utf8_lossy(&response.body);
    match response.status {
        200 => {}
        // The switch's own sentence: nobody is in the room, or not that extension.
        404 => anyhow::bail!("{}", text.trim()),
        status => anyhow::bail!(
            "the switch's admin API at {admin} answered {status}: {}",
            text.trim()
        ),
    }
    if json {
        println!("{}", text.trim());
        return Ok(());
    }
    let done: ActionDone = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("the switch's admin API at {admin} did it, but its answer is odd: {e}")
    })?;
    use crate::proxy::rooms::RoomAction;
    let what = match action {
        RoomAction::Mute {
            extension: Some(e),
            muted,
        } => format!("{e} is {}", if *muted { "muted" } else { "unmuted" }),
        RoomAction::Mute {
            extension: None,
            muted: true,
        } => format!(
            "{} participant(s) muted; who joins is muted too",
            done.affected
        ),
        RoomAction::Mute {
            extension: None,
            muted: false,
        } => format!("{} participant(s) unmuted", done.affected),
        RoomAction::Kick { extension } => {
            format!("{extension} removed ({} call(s) ended)", done.affected)
        }
        RoomAction::Lock { locked: true } => "locked: only its moderators may join".into(),
        RoomAction::Lock { locked: false } => "unlocked".into(),
    };
    let state = match (done.locked, done.all_muted) {
        (true, true) => " (the room is locked and muted)",
        (true, false) => " (the room is locked)",
        (false, true) => " (the room is muted)",
        (false, false) => "",
    };
    println!("room {}: {what}{state}", done.room);
    Ok(())
}

/// `conf mute` (`muted`) or `conf unmute`.
fn mute(admin: std::net::SocketAddr, a: MuteArgs, muted: bool) -> anyhow::Result<()> {
    let action = crate::proxy::rooms::RoomAction::Mute {
        extension: a.extension.as_deref().map(extension).transpose()?,
        muted,
    };
    act(admin, &a.room, &action, a.json)
}

pub(super) fn run(global: &GlobalArgs, cmd: ConfCommand) -> anyhow::Result<()> {
    use crate::proxy::rooms::RoomAction;
    let admin = global.admin();
    match cmd {
        ConfCommand::Mute(a) => mute(admin, a, true)?,
        ConfCommand::Unmute(a) => mute(admin, a, false)?,
        ConfCommand::Kick(a) => {
            let action = RoomAction::Kick {
                extension: extension(&a.extension)?,
            };
            act(admin, &a.room, &action, a.json)?;
        }
        ConfCommand::Lock(a) => act(admin, &a.room, &RoomAction::Lock { locked: true }, a.json)?,
        ConfCommand::Unlock(a) => act(admin, &a.room, &RoomAction::Lock { locked: false }, a.json)?,
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
            let mut t = table(&["ROOM", "PARTICIPANTS", "TALKING", "LOCKED", "MUTED"]);
            for r in rooms {
                let talking = if r.talkers.is_empty() {
                    "-".to_string()
                } else {
                    r.talkers.join(", ")
                };
                let yes = |b: bool| if b { "yes" } else { "-" }.to_string();
                t.add_row(vec![
                    r.room,
                    r.participants.len().to_string(),
                    talking,
                    yes(r.locked),
                    yes(r.all_muted),
                ]);
            }
            println!("{t}");
        }
        ConfCommand::Show(args) => {
            room_number(&args.room)?;
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
                "CODEC",
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
                    if p.codec.is_empty() {
                        "-".into()
                    } else {
                        p.codec
                    },
                    yes(p.talking),
                    muted.to_string(),
                    wib(p.joined_at_ms),
                    p.packets_in.to_string(),
                    p.packets_out.to_string(),
                ]);
            }
            let state = match (room.locked, room.all_muted) {
                (true, true) => ", locked, muted but its moderators",
                (true, false) => ", locked",
                (false, true) => ", muted but its moderators",
                (false, false) => "",
            };
            println!("room {}: {n} participant(s){state}", room.room);
            if let Some(v) = room.video.filter(|v| v.publishers > 0) {
                println!(
                    "video: {} camera(s), {} slot(s) showing one (last {}), {} packets forwarded",
                    v.publishers, v.subscriptions, v.last_n, v.forwarded
                );
            }
            println!("{t}");
        }
    }
    Ok(())
}
