//! The dialplan: one TOML file per OPD (`dialplan/<code>.toml`) plus `dialplan/province.toml`,
//! loaded into a validated, immutable model (see `docs/dialplan.md` for the file format):
//! offices, their rules, groups, schedules and permissions, and the conference rooms
//! (province-wide and per OPD).
//!
//! This module owns the file format, its validation (every error carries `file:line`), the
//! pattern matcher ([`pattern`]) and WIB schedules ([`time`]). Loading reads the files of one
//! directory and nothing else; after that everything is pure: no network I/O, no clock (the
//! caller passes the time), no locks. The evaluator ([`route`]) decides where a call goes and
//! explains it ([`trace`]); a reload builds a new [`Dialplan`] and swaps it in only if it
//! loaded cleanly.

pub mod budget;
mod load;
pub mod pattern;
pub mod route;
pub mod time;
pub mod trace;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::types::{Extension, OpdCode, Transport};

pub use pattern::{Pattern, PatternError, Specificity};
pub use route::{
    Decision, Directory, FeatureAction, Features, RingPlan, RingTarget, RoomPlan, Routing,
};
pub use time::{Days, Hours, Period, Schedule, Weekday, WibTime};
pub use trace::TraceStep;

/// All OPD plans of a directory plus the province-wide plan, validated together.
#[derive(Debug, Clone)]
pub struct Dialplan {
    /// Sorted by code.
    opds: Vec<Opd>,
    province: Province,
    /// Every conference room of every file, sorted by number (numbers are unique).
    rooms: Vec<Room>,
    /// Lookup structures compiled at load for [`Dialplan::route`].
    index: route::Index,
}

impl Dialplan {
    /// A plan from validated parts (opds sorted by code, rooms by number), with its matchers
    /// compiled.
    fn new(opds: Vec<Opd>, province: Province, rooms: Vec<Room>) -> Dialplan {
        let index = route::Index::build(&opds, &province);
        Dialplan {
            opds,
            province,
            rooms,
            index,
        }
    }

    /// Loads every `*.toml` file of `dir` (other files are ignored). `province.toml` must
    /// exist. All errors of all files are collected and returned together.
    pub fn load_dir(dir: &Path) -> Result<Dialplan, DialplanErrors> {
        load::load_dir(dir)
    }

    /// Validates dialplan files already in memory, `(path, text)`, exactly as
    /// [`Dialplan::load_dir`] validates the files of `dir` (the path decides which file is
    /// `province.toml` and what each OPD file is called). For the fuzz target and tests.
    pub fn from_sources(
        dir: &Path,
        files: Vec<(PathBuf, String)>,
    ) -> Result<Dialplan, DialplanErrors> {
        load::from_sources(dir, files, Vec::new())
    }

    /// Changes every carrier (tests).
    #[cfg(test)]
    pub(crate) fn edit_trunks(&mut self, f: impl Fn(&mut Trunk)) {
        self.province.trunks.iter_mut().for_each(f);
    }

    pub fn opds(&self) -> &[Opd] {
        &self.opds
    }

    pub fn opd(&self, code: &OpdCode) -> Option<&Opd> {
        self.opds
            .binary_search_by(|o| o.code.cmp(code))
            .ok()
            .map(|i| &self.opds[i])
    }

    /// The OPD whose block contains `ext`.
    pub fn opd_of(&self, ext: &Extension) -> Option<&Opd> {
        self.index.opd_of(ext.as_str()).map(|i| &self.opds[i])
    }

    pub fn province(&self) -> &Province {
        &self.province
    }

    /// The class of an outside number as dialled (with or without the outside prefix), by
    /// the same most-specific-first rules as routing; `Emergency` for an emergency number.
    /// For reports of past calls (the console's usage per number class).
    pub fn classify_outside(&self, dialled: &str) -> Option<NumberClass> {
        let p = &self.province;
        if p.emergency.iter().any(|e| e == dialled) {
            return Some(NumberClass::Emergency);
        }
        let number = dialled
            .strip_prefix(p.outside_prefix.as_str())
            .unwrap_or(dialled);
        if p.emergency.iter().any(|e| e == number) {
            return Some(NumberClass::Emergency);
        }
        self.index
            .classes
            .iter()
            .map(|&i| &p.classes[i])
            .find(|c| c.pattern.matches(number))
            .map(|c| c.class)
    }

    /// Every conference room (of `province.toml` and of the OPD files), sorted by number.
    pub fn rooms(&self) -> &[Room] {
        &self.rooms
    }

    /// The conference room with this number.
    pub fn room(&self, number: &str) -> Option<&Room> {
        self.rooms
            .binary_search_by(|r| r.number.as_str().cmp(number))
            .ok()
            .map(|i| &self.rooms[i])
    }
}

/// One office's plan, from `dialplan/<code>.toml`.
#[derive(Debug, Clone)]
pub struct Opd {
    pub code: OpdCode,
    pub name: String,
    pub blocks: Vec<Block>,
    /// The switchboard extension (what `0` usually reaches).
    pub reception: Option<Extension>,
    /// The OPD's public number (national form): its caller ID on outside calls.
    pub public_number: Option<String>,
    /// Public numbers (DIDs) of this OPD and where inbound calls to them go.
    pub dids: Vec<Did>,
    /// This OPD's extension that answers calls to public numbers no OPD lists (at most one
    /// OPD has one), and its line.
    pub operator: Option<(Extension, usize)>,
    pub file: PathBuf,
    /// In file order.
    pub rules: Vec<Rule>,
    pub groups: Vec<RingGroup>,
    /// Schedules defined in this file (province-wide ones are in [`Province::schedules`]).
    pub schedules: Vec<Schedule>,
    pub permissions: Permissions,
    /// The monthly budget (`[budget]`), if the file sets one.
    pub budget: Option<budget::Budget>,
}

impl Opd {
    pub fn group(&self, name: &str) -> Option<&RingGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The outside-number classes `ext` may dial: its override if one covers it, else the
    /// OPD's set. Emergency numbers are always included.
    pub fn allowed_classes(&self, ext: &Extension) -> ClassSet {
        self.permissions
            .overrides
            .iter()
            .find(|o| o.extensions.iter().any(|b| b.contains(ext)))
            .map_or(self.permissions.allow, |o| o.allow)
    }
}

/// A range of extension numbers of equal digit count, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub first: u64,
    pub last: u64,
}

impl Block {
    pub fn contains(&self, ext: &Extension) -> bool {
        ext.as_str().len() == self.digits() && (self.first..=self.last).contains(&ext.value())
    }

    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a block holds at least one number.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The number of digits of every extension in the block.
    pub fn digits(&self) -> usize {
        self.first.to_string().len()
    }

    pub fn overlaps(&self, other: &Block) -> bool {
        self.digits() == other.digits() && self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A `[[rule]]`: a pattern, its default target, and optional time-dependent targets.
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: Pattern,
    pub target: Target,
    /// Checked in order before `target`; the first whose condition holds wins.
    pub when: Vec<TimedTarget>,
    /// Line of the rule's `pattern`.
    pub line: usize,
}

/// A public number (DID) of an OPD: inbound calls to it go to `target`, or to the first
/// `when` whose time condition holds.
#[derive(Debug, Clone)]
pub struct Did {
    /// National form (`05363221234`).
    pub number: String,
    pub target: Target,
    pub when: Vec<TimedTarget>,
    pub line: usize,
}

/// Where a rule sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Ring one extension (of any OPD).
    Extension(Extension),
    /// Ring the named `[[group]]` of the same file.
    Group(String),
    /// Dial this number instead, evaluated again from the top of the caller's plan.
    Alias(String),
    /// Refuse with a SIP status (400-699) and an optional reason phrase.
    Reject { status: u16, reason: Option<String> },
    /// Send the dialled number, unchanged, to the province trunk.
    Trunk,
}

/// A time-dependent alternative target of a rule.
#[derive(Debug, Clone)]
pub struct TimedTarget {
    pub condition: TimeCondition,
    pub target: Target,
    pub line: usize,
}

/// A condition on a named schedule (of the OPD's file or of `province.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeCondition {
    During(String),
    Outside(String),
}

/// A room's video egress budget when its file names none: 150 Mbit/s, so that a room of all
/// 43 offices fits the province's 1 Gbps WAN beside its calls.
pub const DEFAULT_VIDEO_MBPS: u32 = 150;

/// A `[[room]]`: a conference room the switch answers for (in `province.toml` for a
/// province-wide room, in an OPD file for that OPD's own room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// 3 to 6 digits, outside every block; unique across all files.
    pub number: String,
    pub name: String,
    /// Asked of everyone who joins, if set.
    pub pin: Option<String>,
    /// Makes whoever enters it a moderator; never equal to `pin`.
    pub moderator_pin: Option<String>,
    /// The most participants at once (2 to 500).
    pub max: u32,
    /// What the room's video may send in all, in Mbit/s (1 to 1000; default
    /// [`DEFAULT_VIDEO_MBPS`]): the SFU shows fewer cameras per participant to stay within it.
    pub video_mbps: u32,
    /// Which OPDs' extensions may join.
    pub opds: RoomAccess,
    /// Who is a moderator without a PIN: whole OPDs or single extensions.
    pub moderators: Vec<Moderator>,
    /// When the room is open; `None`: always.
    pub time: Option<RoomTime>,
    /// The file that declares the room.
    pub file: PathBuf,
    /// Line of the room's `number`.
    pub line: usize,
    /// The OPD whose file declares the room; `None` for a room of `province.toml`.
    pub owner: Option<OpdCode>,
}

impl Room {
    /// Whether an extension of OPD `opd` may join.
    pub fn admits(&self, opd: &OpdCode) -> bool {
        match &self.opds {
            RoomAccess::All => true,
            RoomAccess::Only(codes) => codes.contains(opd),
        }
    }

    /// Whether `ext` (of OPD `opd`) is a moderator without a PIN.
    pub fn moderated_by(&self, ext: &Extension, opd: &OpdCode) -> bool {
        self.moderators.iter().any(|m| match m {
            Moderator::Opd(code) => code == opd,
            Moderator::Extension(e) => e == ext,
        })
    }
}

/// Which OPDs may join a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomAccess {
    /// Every OPD (the default of a province room).
    All,
    /// Only these, in file order (an OPD room's default is its owner alone).
    Only(Vec<OpdCode>),
}

/// One `moderators` entry of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moderator {
    /// Every extension of the OPD.
    Opd(OpdCode),
    /// One extension (of an OPD that may join).
    Extension(Extension),
}

/// A room's `during` or `outside` condition, on a schedule of its file or `province.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTime {
    pub condition: TimeCondition,
    pub line: usize,
}

/// A `[[group]]`: several extensions rung for one number.
#[derive(Debug, Clone)]
pub struct RingGroup {
    pub name: String,
    pub strategy: Strategy,
    pub members: Vec<Extension>,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// All members ring at once, for at most `timeout_secs`.
    Parallel { timeout_secs: u32 },
    /// Members ring one after another, each for `member_timeout_secs`.
    Sequential { member_timeout_secs: u32 },
}

/// Classes of dialled numbers, for permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NumberClass {
    Internal,
    Emergency,
    Local,
    National,
    Mobile,
    International,
}

impl NumberClass {
    pub const ALL: [NumberClass; 6] = [
        NumberClass::Internal,
        NumberClass::Emergency,
        NumberClass::Local,
        NumberClass::National,
        NumberClass::Mobile,
        NumberClass::International,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NumberClass::Internal => "internal",
            NumberClass::Emergency => "emergency",
            NumberClass::Local => "local",
            NumberClass::National => "national",
            NumberClass::Mobile => "mobile",
            NumberClass::International => "international",
        }
    }

    pub fn parse(s: &str) -> Option<NumberClass> {
        NumberClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for NumberClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of number classes. Sets built by the loader always contain `Emergency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassSet(u8);

impl ClassSet {
    pub fn contains(self, class: NumberClass) -> bool {
        self.0 & (1 << class as u8) != 0
    }

    pub fn with(self, class: NumberClass) -> ClassSet {
        ClassSet(self.0 | 1 << class as u8)
    }

    pub fn iter(self) -> impl Iterator<Item = NumberClass> {
        NumberClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl fmt::Display for ClassSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(NumberClass::as_str).collect();
        f.write_str(&names.join(", "))
    }
}

/// What an OPD's extensions may dial.
#[derive(Debug, Clone)]
pub struct Permissions {
    /// The OPD's set (the province default unless the file sets `permissions.allow`).
    pub allow: ClassSet,
    /// Per-extension sets that replace `allow` for the extensions they cover.
    pub overrides: Vec<ExtensionPermissions>,
}

#[derive(Debug, Clone)]
pub struct ExtensionPermissions {
    pub extensions: Vec<Block>,
    pub allow: ClassSet,
    pub line: usize,
}

/// The province-wide plan, from `dialplan/province.toml`.
#[derive(Debug, Clone)]
pub struct Province {
    pub file: PathBuf,
    /// The carriers of the central trunk, in the order calls try them (priority, then file
    /// order); never empty.
    pub trunks: Vec<Trunk>,
    /// The caller ID (national form) of OPDs without a public number of their own.
    pub public_number: Option<String>,
    /// The outside-line prefix (`9`), stripped before classification.
    pub outside_prefix: String,
    /// Numbers that always reach the trunk, from every extension, without the prefix.
    pub emergency: Vec<String>,
    /// How a number dialled after the prefix is classified; the most specific pattern wins.
    pub classes: Vec<ClassRule>,
    /// What an OPD may dial when its file sets no `permissions.allow`.
    pub default_permissions: ClassSet,
    pub features: FeatureCodes,
    pub schedules: Vec<Schedule>,
    /// Prices of outside classes for budgets in rupiah (`[[rate]]`), in file order.
    pub rates: Vec<budget::Rate>,
}

impl Province {
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

/// One carrier of the central trunk (`[[trunk]]` in `province.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// The name operators use (`tambun trunk status`, `tambun trunk passwd NAME`).
    pub name: String,
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    /// Lower is tried first.
    pub priority: u32,
    /// How the carrier wants numbers written (the number dialled, after the class rules).
    pub number_format: NumberFormat,
    /// Where the caller's public number goes on calls to this carrier.
    pub caller_id: CallerIdPlacement,
    /// Where an inbound call from this carrier carries the public number dialled.
    pub did_from: DidSource,
    /// OPTIONS to the carrier every so many seconds; 0: never.
    pub ping_secs: u32,
    /// A call that hears nothing at all (not even 100 Trying) from this carrier within this
    /// many seconds goes to the next carrier.
    pub timeout_secs: u32,
    /// Outbound registration, when the carrier wants one.
    pub register: Option<TrunkRegistration>,
    /// The audio encodings the carrier takes (`PCMA`, `PCMU`, `G729` …); empty: any. Offers
    /// to it are cut to these (telephone-event always stays).
    pub codecs: Vec<String>,
    /// How the switch checks the carrier's certificate (transport `tls` only).
    pub tls: Option<TrunkTls>,
    /// Where else the carrier's calls come from (its SBCs): addresses or networks, any port.
    /// Calls from the target's own IP and port are always the carrier's.
    pub inbound_from: Vec<crate::guard::Cidr>,
    /// The line of `[[trunk]]`'s `name`.
    pub line: usize,
}

/// The CA certificates a TLS carrier's certificate is checked against when its `[[trunk]]`
/// names no `tls_ca`: Debian's system store (`ca-certificates`).
pub const DEFAULT_TRUNK_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS toward a carrier: the switch connects, and the carrier's certificate must chain to a
/// CA of `ca_file` and carry `server_name` (a DNS name, or the target's IP address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkTls {
    pub server_name: String,
    /// A PEM file (relative paths: from the directory of `province.toml`).
    pub ca_file: PathBuf,
}

/// How Tambun registers with a carrier. The secret is not here: `tambun trunk passwd NAME`
/// keeps its digest hash (HA1, for this username and realm) in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRegistration {
    pub username: String,
    /// The realm the carrier challenges with (the HA1 is for this realm).
    pub realm: String,
    /// The host of the address of record (`sip:username@domain`); the target's host by default.
    pub domain: String,
    /// Registration lifetime asked for; refreshed halfway through what the carrier grants.
    pub expires_secs: u32,
}

/// Number formats carriers ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberFormat {
    /// `+62536…`, `+62812…`; international `+…`.
    E164,
    /// `0536…`, `0812…`; international `00…` (the plan's own form).
    National,
    /// As national, but numbers in the area `area` without their area code (`3231110`).
    Local { area: String },
}

/// Where the OPD's public number goes on a call to a carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerIdPlacement {
    /// `P-Asserted-Identity` (RFC 3325); From as the phone sent it.
    Pai,
    /// The From URI's user (display name kept); no PAI.
    From,
    /// Both.
    Both,
}

/// Where an inbound call carries the dialled public number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DidSource {
    RequestUri,
    To,
}

/// One classification rule for outside numbers.
#[derive(Debug, Clone)]
pub struct ClassRule {
    pub pattern: Pattern,
    pub class: NumberClass,
    /// Digits put in front of the number sent to the carrier (e.g. `0536` for 7-digit local).
    pub prepend: Option<String>,
    pub line: usize,
}

/// Feature codes dialled from phones; each is followed by nothing except `forward_on`, which
/// is followed by the forward target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCodes {
    pub forward_on: String,
    pub forward_off: String,
    pub dnd_on: String,
    pub dnd_off: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            forward_on: "*72".into(),
            forward_off: "*73".into(),
            dnd_on: "*78".into(),
            dnd_off: "*79".into(),
        }
    }
}

/// One problem in one dialplan file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct DialplanError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the file or directory as a whole.
    pub line: usize,
    pub reason: String,
}

/// Every problem found while loading a directory, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialplanErrors(pub Vec<DialplanError>);

impl fmt::Display for DialplanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DialplanErrors {}

#[cfg(test)]
mod tests;
