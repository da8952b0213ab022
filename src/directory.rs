//! The directory the softphone page shows: every OPD of the dialplan with its enabled
//! extensions, their names and whether they are registered now. Built from the registrar's
//! accounts and location and the dialplan's OPD list; only for a caller who proved a password
//! (the switch checks it, [`crate::switch::Switch::directory`]).

use serde::Serialize;

use crate::dialplan::Dialplan;
use crate::registrar::Registrar;
use crate::types::{Extension, OpdCode};

/// What `GET /phone/api/directory` answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Directory {
    /// The extension that asked.
    pub me: Extension,
    pub opds: Vec<DirectoryOpd>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DirectoryOpd {
    pub code: OpdCode,
    pub name: String,
    pub extensions: Vec<DirectoryEntry>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub ext: Extension,
    pub name: String,
    /// Registered now (at least one binding).
    pub online: bool,
}

/// The directory for `me`: the dialplan's OPDs in order (with their names), then any OPD an
/// account names that the plan does not; extensions sorted by number; disabled ones left out.
pub fn build(me: Extension, registrar: &Registrar, plan: &Dialplan) -> Directory {
    let mut opds: Vec<DirectoryOpd> = plan
        .opds()
        .iter()
        .map(|o| DirectoryOpd {
            code: o.code.clone(),
            name: o.name.clone(),
            extensions: Vec::new(),
        })
        .collect();
    let mut accounts: Vec<_> = registrar.accounts().iter().filter(|a| a.enabled).collect();
    accounts.sort_by(|a, b| a.extension.as_str().cmp(b.extension.as_str()));
    for a in accounts {
        let entry = DirectoryEntry {
            ext: a.extension.clone(),
            name: a.name.clone(),
            online: !registrar.location.bindings(&a.extension).is_empty(),
        };
        match opds.iter_mut().find(|o| o.code == a.opd) {
            Some(o) => o.extensions.push(entry),
            None => opds.push(DirectoryOpd {
                code: a.opd.clone(),
                name: a.opd.to_string(),
                extensions: vec![entry],
            }),
        }
    }
    Directory { me, opds }
}

/// What `GET /phone/api/rooms` answers: the conference rooms the extension's OPD may join,
/// with who is in them now. Talking and muted come from the relay (added by the web side).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhoneRooms {
    pub me: Extension,
    pub rooms: Vec<PhoneRoom>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhoneRoom {
    pub number: String,
    pub name: String,
    /// A PIN is asked of whoever joins.
    pub pin: bool,
    /// `me` moderates it (by extension or OPD): the page shows the moderator's buttons.
    pub moderator: bool,
    pub locked: bool,
    pub all_muted: bool,
    pub participants: Vec<PhoneParticipant>,
    /// The relay's id of the room (to ask it who talks).
    #[serde(skip)]
    pub room_id: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhoneParticipant {
    /// The extension, or an outside caller's number.
    pub who: String,
    pub opd: Option<String>,
    pub moderator: bool,
    pub talking: bool,
    pub muted: bool,
    /// Whom each of its video lines shows (the room's SFU, last-N by talker), in the order
    /// of its video m-lines; empty without video.
    pub showing: Vec<Option<String>>,
    #[serde(skip)]
    pub session: u64,
}

/// The rooms `me` (of OPD `opd`) may join, in the dialplan's order, with the participants
/// of `live` (the rooms that have some).
pub fn phone_rooms(
    me: Extension,
    opd: Option<&OpdCode>,
    plan: &Dialplan,
    live: &[crate::proxy::rooms::RoomView],
) -> PhoneRooms {
    let rooms = plan
        .rooms()
        .iter()
        .filter(|r| opd.is_some_and(|o| r.admits(o)))
        .map(|r| {
            let now = live.iter().find(|v| v.room == r.number);
            PhoneRoom {
                number: r.number.clone(),
                name: r.name.clone(),
                pin: r.pin.is_some(),
                moderator: opd.is_some_and(|o| r.moderated_by(&me, o)),
                locked: now.is_some_and(|v| v.locked),
                all_muted: now.is_some_and(|v| v.all_muted),
                participants: now
                    .map(|v| {
                        v.participants
                            .iter()
                            .map(|p| PhoneParticipant {
                                who: p.extension.clone(),
                                opd: p.opd.clone(),
                                moderator: p.moderator,
                                talking: false,
                                muted: false,
                                showing: Vec::new(),
                                session: p.session,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                room_id: r.number.parse().unwrap_or(0),
            }
        })
        .collect();
    PhoneRooms { me, rooms }
}
