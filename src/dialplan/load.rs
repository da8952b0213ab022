//! Reading and validating a dialplan directory: TOML into raw (spanned) structs, then into the
//! model of [`super`], collecting every error with its `file:line`. The only I/O is reading
//! the directory listing and the files. What needs more than one file (blocks overlapping,
//! extensions and OPD codes that must exist, conference room numbers) is checked last, in
//! [`check_across`].

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{
    Block, CallerIdPlacement, ClassRule, ClassSet, Days, Dialplan, DialplanError, DialplanErrors,
    Did, DidSource, ExtensionPermissions, FeatureCodes, Hours, Moderator, NumberClass,
    NumberFormat, Opd, Pattern, Period, Permissions, Province, RingGroup, Room, RoomAccess,
    RoomTime, Rule, Schedule, Strategy, Target, TimeCondition, TimedTarget, Trunk,
    TrunkRegistration, TrunkTls, DEFAULT_VIDEO_MBPS,
};
use crate::types::{Extension, OpdCode, Transport};

mod budget;

const PROVINCE_FILE: &str = "province.toml";

// ---------------------------------------------------------------------------------------------
// Raw file shapes. Every field an error may point at is `Spanned`.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpd {
    code: Spanned<String>,
    name: Spanned<String>,
    blocks: Vec<Spanned<String>>,
    reception: Option<Spanned<String>>,
    /// The OPD's public number: its caller ID on outside calls.
    public_number: Option<Spanned<String>>,
    /// This OPD's extension that answers calls to public numbers no OPD lists.
    operator: Option<Spanned<String>>,
    permissions: Option<RawPermissions>,
    budget: Option<Spanned<budget::RawBudget>>,
    #[serde(default)]
    schedule: Vec<RawSchedule>,
    #[serde(default)]
    group: Vec<RawGroup>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    room: Vec<RawRoom>,
    /// The OPD's public numbers (DIDs) and where inbound calls to them go.
    #[serde(default)]
    did: Vec<RawDid>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDid {
    number: Spanned<String>,
    to: Spanned<RawTarget>,
    #[serde(default)]
    when: Vec<RawWhen>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPermissions {
    allow: Option<Vec<Spanned<String>>>,
    #[serde(default, rename = "override")]
    overrides: Vec<RawOverride>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    extensions: Spanned<Vec<Spanned<String>>>,
    allow: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    name: Spanned<String>,
    periods: Vec<RawPeriod>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeriod {
    days: Spanned<String>,
    hours: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    strategy: Spanned<String>,
    members: Spanned<Vec<Spanned<String>>>,
    timeout: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    pattern: Spanned<String>,
    to: Spanned<RawTarget>,
    #[serde(default)]
    when: Vec<RawWhen>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    during: Option<Spanned<String>>,
    outside: Option<Spanned<String>>,
    to: Spanned<RawTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    extension: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    alias: Option<Spanned<String>>,
    reject: Option<Spanned<i64>>,
    reason: Option<Spanned<String>>,
    trunk: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoom {
    number: Spanned<String>,
    name: Spanned<String>,
    pin: Option<Spanned<String>>,
    moderator_pin: Option<Spanned<String>>,
    max: Option<Spanned<i64>>,
    video_mbps: Option<Spanned<i64>>,
    opds: Option<Spanned<Vec<Spanned<String>>>>,
    moderators: Option<Vec<Spanned<String>>>,
    during: Option<Spanned<String>>,
    outside: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvince<T> {
    /// `[[trunk]]` (carriers) or, as older files have it, one `[trunk]` table.
    trunk: T,
    outside: RawOutside,
    emergency: RawEmergency,
    permissions: RawDefaultPermissions,
    features: Option<RawFeatures>,
    #[serde(default)]
    rate: Vec<budget::RawRate>,
    #[serde(default)]
    schedule: Vec<RawSchedule>,
    #[serde(default)]
    room: Vec<RawRoom>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrunk {
    /// Required with `[[trunk]]`; a lone `[trunk]` table is called `trunk`.
    name: Option<Spanned<String>>,
    target: Spanned<String>,
    transport: Spanned<String>,
    priority: Option<Spanned<i64>>,
    number_format: Option<Spanned<String>>,
    area_code: Option<Spanned<String>>,
    caller_id: Option<Spanned<String>>,
    did_from: Option<Spanned<String>>,
    ping_secs: Option<Spanned<i64>>,
    timeout_secs: Option<Spanned<i64>>,
    codecs: Option<Vec<Spanned<String>>>,
    register: Option<RawTrunkRegister>,
    tls_name: Option<Spanned<String>>,
    tls_ca: Option<Spanned<String>>,
    inbound_from: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrunkRegister {
    username: Spanned<String>,
    realm: Spanned<String>,
    domain: Option<Spanned<String>>,
    expires_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutside {
    prefix: Spanned<String>,
    /// The caller ID of OPDs without a `public_number` of their own.
    public_number: Option<Spanned<String>>,
    class: Vec<RawClass>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    pattern: Spanned<String>,
    class: Spanned<String>,
    prepend: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmergency {
    numbers: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaultPermissions {
    default: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeatures {
    forward_on: Option<Spanned<String>>,
    forward_off: Option<Spanned<String>>,
    dnd_on: Option<Spanned<String>>,
    dnd_off: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// Directory level.

pub(super) fn load_dir(dir: &Path) -> Result<Dialplan, DialplanErrors> {
    let mut errors = Vec::new();
    let paths = match toml_files(dir) {
        Ok(p) => p,
        Err(e) => {
            return Err(DialplanErrors(vec![DialplanError {
                file: dir.to_path_buf(),
                line: 0,
                reason: format!("cannot read the dialplan directory: {e}"),
            }]))
        }
    };
    let mut files = Vec::new();
    for path in paths {
        if let Some(src) = read(&path, &mut errors) {
            files.push((path, src));
        }
    }
    from_sources(dir, files, errors)
}

/// Validates files already read (`(path, text)`, any order) as one directory `dir`; `errors`
/// holds what went wrong while reading. The file named `province.toml` in `dir` is the
/// province plan; every other file is an OPD plan.
pub(super) fn from_sources(
    dir: &Path,
    mut files: Vec<(PathBuf, String)>,
    mut errors: Vec<DialplanError>,
) -> Result<Dialplan, DialplanErrors> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let province_path = dir.join(PROVINCE_FILE);
    let province_src = files.iter().find(|(p, _)| *p == province_path);
    let mut rooms = Vec::new();
    let province = if let Some((_, src)) = province_src {
        let mut f = FileCtx::new(&province_path, src, &mut errors);
        let (province, province_rooms) = parse_province(&mut f);
        rooms = province_rooms;
        province
    } else if errors.iter().any(|e| e.file == province_path) {
        None
    } else {
        errors.push(DialplanError {
            file: province_path.clone(),
            line: 0,
            reason: "missing: province.toml (trunk, outside prefix, emergency numbers, number \
                     classes, default permissions) is required"
                .into(),
        });
        None
    };

    let mut opds = Vec::new();
    for (path, src) in files.iter().filter(|(p, _)| *p != province_path) {
        let mut f = FileCtx::new(path, src, &mut errors);
        if let Some(mut parsed) = parse_opd(&mut f, province.as_ref()) {
            rooms.append(&mut parsed.rooms);
            opds.push(parsed);
        }
    }

    check_across(&opds, province.as_ref(), &mut errors);
    check_rooms(&rooms, &opds, province.as_ref(), &mut errors);

    match province {
        Some(province) if errors.is_empty() => {
            let mut opds: Vec<Opd> = opds.into_iter().map(|p| p.opd).collect();
            opds.sort_by(|a, b| a.code.cmp(&b.code));
            let mut rooms: Vec<Room> = rooms.into_iter().map(|r| r.room).collect();
            rooms.sort_by(|a, b| a.number.cmp(&b.number));
            Ok(Dialplan::new(opds, province, rooms))
        }
        _ => Err(DialplanErrors(errors)),
    }
}

fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            out.push(path);
        }
    }
    Ok(out)
}

fn read(path: &Path, errors: &mut Vec<DialplanError>) -> Option<String> {
    match fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(DialplanError {
                file: path.to_path_buf(),
                line: 0,
                reason: format!("cannot read: {e}"),
            });
            None
        }
    }
}

/// An OPD as parsed, with the places the cross-file checks point at.
struct ParsedOpd {
    opd: Opd,
    code_line: usize,
    block_lines: Vec<usize>,
    /// Every extension a rule or group of this file rings, with its line.
    ext_refs: Vec<(Extension, usize)>,
    /// The rooms this file declares (moved out before the cross-file checks).
    rooms: Vec<ParsedRoom>,
}

/// A room as parsed from one file, with the lines of what [`check_rooms`] may point at.
struct ParsedRoom {
    room: Room,
    /// The line of each OPD code of an explicit `opds` list, in its order.
    opd_lines: Vec<usize>,
    /// The line of each `moderators` entry, in its order.
    moderator_lines: Vec<usize>,
    /// No `opds` key: every OPD for a province room, the owner for an OPD room.
    default_opds: bool,
}

/// Checks that need more than one file: duplicate codes, overlapping blocks, extensions that
/// are in no OPD's block, emergency numbers and the outside prefix colliding with blocks.
fn check_across(opds: &[ParsedOpd], province: Option<&Province>, errors: &mut Vec<DialplanError>) {
    let mut dids: BTreeMap<&str, (&ParsedOpd, usize)> = BTreeMap::new();
    for p in opds {
        for d in &p.opd.dids {
            if let Some((other, line)) = dids.insert(&d.number, (p, d.line)) {
                if other.opd.file != p.opd.file {
                    errors.push(err(
                        &p.opd.file,
                        d.line,
                        format!(
                            "public number {} is also listed in {}:{line}",
                            d.number,
                            other.opd.file.display()
                        ),
                    ));
                }
            }
        }
    }
    let operators: Vec<&ParsedOpd> = opds.iter().filter(|p| p.opd.operator.is_some()).collect();
    if let [first, rest @ ..] = &operators[..] {
        for p in rest {
            if let Some((_, line)) = &p.opd.operator {
                errors.push(err(
                    &p.opd.file,
                    *line,
                    format!(
                        "only one OPD may have the operator; {} has it already",
                        first.opd.file.display()
                    ),
                ));
            }
        }
    }
    let mut by_code: BTreeMap<&OpdCode, &ParsedOpd> = BTreeMap::new();
    for p in opds {
        if let Some(first) = by_code.insert(&p.opd.code, p) {
            let reason = |other: &ParsedOpd| {
                format!(
                    "duplicate OPD code '{}' (also in {}:{})",
                    p.opd.code,
                    other.opd.file.display(),
                    other.code_line
                )
            };
            errors.push(err(&first.opd.file, first.code_line, reason(p)));
            errors.push(err(&p.opd.file, p.code_line, reason(first)));
        }
    }

    let blocks: Vec<(&ParsedOpd, Block, usize)> = opds
        .iter()
        .flat_map(|p| {
            p.opd
                .blocks
                .iter()
                .zip(&p.block_lines)
                .map(move |(b, l)| (p, *b, *l))
        })
        .collect();
    for (i, (pa, a, la)) in blocks.iter().enumerate() {
        for (pb, b, lb) in &blocks[i + 1..] {
            if a.overlaps(b) {
                let msg = |own: &Block, other: &Block, p: &ParsedOpd, l: usize| {
                    format!(
                        "block {own} overlaps block {other} of '{}' ({}:{l})",
                        p.opd.code,
                        p.opd.file.display()
                    )
                };
                errors.push(err(&pa.opd.file, *la, msg(a, b, pb, *lb)));
                errors.push(err(&pb.opd.file, *lb, msg(b, a, pa, *la)));
            }
        }
    }

    let in_some_block = |ext: &Extension| blocks.iter().any(|(_, b, _)| b.contains(ext));
    for p in opds {
        for (ext, line) in &p.ext_refs {
            if !in_some_block(ext) {
                errors.push(err(
                    &p.opd.file,
                    *line,
                    format!("extension {ext} is in no OPD's block"),
                ));
            }
        }
    }

    let Some(province) = province else { return };
    for number in &province.emergency {
        if let Ok(ext) = number.parse::<Extension>() {
            if let Some((p, b, l)) = blocks.iter().find(|(_, b, _)| b.contains(&ext)) {
                errors.push(err(
                    &p.opd.file,
                    *l,
                    format!("block {b} contains the emergency number {number}"),
                ));
            }
        }
    }
    for (p, b, l) in &blocks {
        if block_meets_prefix(b, &province.outside_prefix) {
            errors.push(err(
                &p.opd.file,
                *l,
                format!(
                    "block {b} contains numbers starting with the outside-line prefix '{}'",
                    province.outside_prefix
                ),
            ));
        }
    }
}

/// Checks of the rooms of every file against each other and against the OPDs and the
/// province plan: unique numbers (both places are named), numbers outside every block and
/// clear of the emergency numbers and the outside prefix, OPD codes that exist, moderator
/// extensions in some block and moderators who may join. Feature codes start with `*` and
/// room numbers are digits, so they cannot collide.
fn check_rooms(
    rooms: &[ParsedRoom],
    opds: &[ParsedOpd],
    province: Option<&Province>,
    errors: &mut Vec<DialplanError>,
) {
    for (i, a) in rooms.iter().enumerate() {
        for b in &rooms[i + 1..] {
            if a.room.number == b.room.number {
                let msg = |own: &Room, other: &Room| {
                    format!(
                        "room number {} is already used by room '{}' ({}:{})",
                        own.number,
                        other.name,
                        other.file.display(),
                        other.line
                    )
                };
                errors.push(err(&a.room.file, a.room.line, msg(&a.room, &b.room)));
                errors.push(err(&b.room.file, b.room.line, msg(&b.room, &a.room)));
            }
        }
    }

    let opd_named = |code: &OpdCode| opds.iter().find(|p| &p.opd.code == code);
    let opd_of = |ext: &Extension| {
        opds.iter()
            .find(|p| p.opd.blocks.iter().any(|b| b.contains(ext)))
    };
    for ParsedRoom {
        room,
        opd_lines,
        moderator_lines,
        ..
    } in rooms
    {
        let number = room.number.as_str();
        let value: u64 = number.parse().unwrap_or(u64::MAX);
        for p in opds {
            let hit =
                p.opd.blocks.iter().zip(&p.block_lines).find(|(b, _)| {
                    b.digits() == number.len() && (b.first..=b.last).contains(&value)
                });
            if let Some((b, l)) = hit {
                errors.push(err(
                    &room.file,
                    room.line,
                    format!(
                        "room number {number} is in block {b} of '{}' ({}:{l}); rooms need numbers \
                         outside every block (the shipped plan uses 8000-8999)",
                        p.opd.code,
                        p.opd.file.display()
                    ),
                ));
            }
        }
        if let Some(province) = province {
            if province.emergency.iter().any(|e| e == number) {
                errors.push(err(
                    &room.file,
                    room.line,
                    format!("room number {number} is an emergency number"),
                ));
            }
            if number.starts_with(province.outside_prefix.as_str()) {
                errors.push(err(
                    &room.file,
                    room.line,
                    format!(
                        "room number {number} starts with the outside-line prefix '{}'",
                        province.outside_prefix
                    ),
                ));
            }
        }

        if let RoomAccess::Only(codes) = &room.opds {
            for (code, line) in codes.iter().zip(opd_lines) {
                if opd_named(code).is_none() {
                    errors.push(err(
                        &room.file,
                        *line,
                        format!("room {number}: unknown OPD '{code}' (no OPD file has this code)"),
                    ));
                }
            }
        }
        for (m, line) in room.moderators.iter().zip(moderator_lines) {
            let opd = match m {
                Moderator::Opd(code) => {
                    if opd_named(code).is_none() {
                        errors.push(err(
                            &room.file,
                            *line,
                            format!(
                                "room {number}: unknown OPD '{code}' among the moderators (no OPD \
                                 file has this code)"
                            ),
                        ));
                        continue;
                    }
                    code
                }
                Moderator::Extension(ext) => match opd_of(ext) {
                    Some(p) => &p.opd.code,
                    None => {
                        errors.push(err(
                            &room.file,
                            *line,
                            format!("room {number}: moderator {ext} is in no OPD's block"),
                        ));
                        continue;
                    }
                },
            };
            if !room.admits(opd) {
                let who = match m {
                    Moderator::Opd(code) => format!("OPD '{code}'"),
                    Moderator::Extension(ext) => format!("{ext} (of OPD '{opd}')"),
                };
                errors.push(err(
                    &room.file,
                    *line,
                    format!(
                        "room {number}: moderator {who} may not join the room (add '{opd}' to \
                         its opds)"
                    ),
                ));
            }
        }
    }
}

/// Whether some number in the block starts with `prefix`.
fn block_meets_prefix(b: &Block, prefix: &str) -> bool {
    let (digits, k) = (b.digits(), prefix.len());
    let Ok(p) = prefix.parse::<u64>() else {
        return false;
    };
    if k > digits {
        return false;
    }
    let scale = 10u64.pow((digits - k) as u32);
    let (lo, hi) = (p * scale, (p + 1) * scale - 1);
    lo <= b.last && b.first <= hi
}

fn err(file: &Path, line: usize, reason: String) -> DialplanError {
    DialplanError {
        file: file.to_path_buf(),
        line,
        reason,
    }
}

// ---------------------------------------------------------------------------------------------
// One file.

struct FileCtx<'a> {
    path: &'a Path,
    src: &'a str,
    errors: &'a mut Vec<DialplanError>,
}

impl<'a> FileCtx<'a> {
    fn new(path: &'a Path, src: &'a str, errors: &'a mut Vec<DialplanError>) -> Self {
        FileCtx { path, src, errors }
    }

    /// The 1-based line of a byte offset.
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.src.len());
        self.src.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&mut self, span: &Range<usize>, reason: impl Into<String>) {
        let line = self.line(span);
        self.errors.push(err(self.path, line, reason.into()));
    }

    fn deserialize<T: for<'de> Deserialize<'de>>(&mut self) -> Option<T> {
        match toml::from_str::<T>(self.src) {
            Ok(v) => Some(v),
            Err(e) => {
                let line = e.span().map_or(0, |s| self.line(&s));
                let mut reason = e.message().trim().to_owned();
                if reason.is_empty() {
                    // Seen for control characters in comments: the parser gives no message.
                    let at = e.span().map(|s| s.start).unwrap_or(0);
                    reason = match self.src.get(at..).and_then(|r| r.chars().next()) {
                        Some(c) => format!("invalid TOML at {c:?}"),
                        None => "invalid TOML at the end of the file".to_owned(),
                    };
                }
                self.errors.push(err(self.path, line, reason));
                None
            }
        }
    }

    fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Parses a spanned value, recording the error at its line.
    fn parse<T>(
        &mut self,
        v: &Spanned<String>,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match f(v.get_ref()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(&v.span(), e);
                None
            }
        }
    }
}

/// The province plan (`None` if the file has errors) and its rooms (returned even then, so
/// that the cross-file checks see their numbers).
fn parse_province(f: &mut FileCtx<'_>) -> (Option<Province>, Vec<ParsedRoom>) {
    // `[trunk]` (one table, older files) or `[[trunk]]` (carriers): serde cannot keep spans
    // through an untagged enum, so look first, then read the file in the shape it has.
    let one_table = toml::from_str::<toml::Table>(f.src)
        .ok()
        .is_some_and(|t| t.get("trunk").is_some_and(|v| v.is_table()));
    let raw = if one_table {
        f.deserialize::<RawProvince<RawTrunk>>()
            .map(|r| RawProvince {
                trunk: vec![r.trunk],
                outside: r.outside,
                emergency: r.emergency,
                permissions: r.permissions,
                features: r.features,
                rate: r.rate,
                schedule: r.schedule,
                room: r.room,
            })
    } else {
        f.deserialize::<RawProvince<Vec<RawTrunk>>>()
    };
    let Some(raw) = raw else {
        return (None, Vec::new());
    };
    let before = f.error_count();

    let trunks = parse_trunks(f, &raw.trunk, one_table);

    let prefix = f.parse(&raw.outside.prefix, |s| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(s.to_owned())
        } else {
            Err(format!("outside-line prefix '{s}' must be digits"))
        }
    });

    let public_number = match &raw.outside.public_number {
        Some(n) => f.parse(n, parse_public_number),
        None => None,
    };

    let mut classes = Vec::new();
    for c in &raw.outside.class {
        let line = f.line(&c.pattern.span());
        let pattern = f.parse(&c.pattern, |s| {
            s.parse::<Pattern>().map_err(|e| e.to_string())
        });
        let class = f.parse(&c.class, |s| match NumberClass::parse(s) {
            Some(
                k @ (NumberClass::Local
                | NumberClass::National
                | NumberClass::Mobile
                | NumberClass::International),
            ) => Ok(k),
            _ => Err(format!(
                "unknown number class '{s}' for outside numbers (local, national, mobile, international)"
            )),
        });
        let prepend = match &c.prepend {
            Some(p) => f.parse(p, |s| dial_string(s, "prepend")).map(Some),
            None => Some(None),
        };
        if let (Some(pattern), Some(class), Some(prepend)) = (pattern, class, prepend) {
            classes.push(ClassRule {
                pattern,
                class,
                prepend,
                line,
            });
        }
    }
    let patterns: Vec<(&Pattern, usize)> = classes.iter().map(|c| (&c.pattern, c.line)).collect();
    check_ties(f, &patterns);

    let mut emergency: Vec<String> = Vec::new();
    if raw.emergency.numbers.get_ref().is_empty() {
        f.error(
            &raw.emergency.numbers.span(),
            "at least one emergency number is required",
        );
    }
    for n in raw.emergency.numbers.get_ref() {
        if let Some(num) = f.parse(n, |s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(s.to_owned())
            } else {
                Err(format!("emergency number '{s}' must be digits"))
            }
        }) {
            if emergency.contains(&num) {
                f.error(&n.span(), format!("emergency number {num} is listed twice"));
            } else {
                emergency.push(num);
            }
        }
    }

    let default_permissions = parse_classes(f, &raw.permissions.default);
    let features = parse_features(f, raw.features.as_ref());
    let rates = budget::parse_rates(f, &raw.rate);
    let schedules = parse_schedules(f, &raw.schedule, &[]);
    let schedule_known = |name: &str| schedules.iter().any(|s| s.name == name);
    let rooms = parse_rooms(f, &raw.room, &schedule_known);

    let Some(outside_prefix) = prefix else {
        return (None, rooms);
    };
    if f.error_count() > before {
        return (None, rooms);
    }
    let province = Province {
        file: f.path.to_path_buf(),
        trunks,
        public_number,
        outside_prefix,
        emergency,
        classes,
        default_permissions,
        features,
        schedules,
        rates,
    };
    (Some(province), rooms)
}

fn parse_opd(f: &mut FileCtx<'_>, province: Option<&Province>) -> Option<ParsedOpd> {
    let raw: RawOpd = f.deserialize()?;
    let code_line = f.line(&raw.code.span());

    let code = f.parse(&raw.code, |s| s.parse::<OpdCode>().map_err(|e| e.0));
    if let Some(code) = &code {
        let stem = f.path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem != code.as_str() {
            f.error(
                &raw.code.span(),
                format!(
                    "code '{code}' does not match the file name '{stem}.toml' (name the file '{code}.toml')"
                ),
            );
        }
    }
    let name = raw.name.get_ref().trim().to_owned();
    if name.is_empty() {
        f.error(&raw.name.span(), "the display name is empty");
    }

    let mut blocks = Vec::new();
    let mut block_lines = Vec::new();
    if raw.blocks.is_empty() {
        f.error(&raw.code.span(), "the OPD has no extension blocks");
    }
    for b in &raw.blocks {
        if let Some(block) = f.parse(b, |s| parse_block(s, false)) {
            blocks.push(block);
            block_lines.push(f.line(&b.span()));
        }
    }
    let in_own_blocks = |ext: &Extension| blocks.iter().any(|b| b.contains(ext));

    let reception = match &raw.reception {
        Some(r) => f
            .parse(r, |s| s.parse::<Extension>().map_err(|e| e.0))
            .map(|ext| {
                if !in_own_blocks(&ext) {
                    f.error(
                        &r.span(),
                        format!("reception {ext} is not in this OPD's blocks"),
                    );
                }
                ext
            }),
        None => None,
    };

    let public_number = match &raw.public_number {
        Some(n) => f.parse(n, parse_public_number),
        None => None,
    };
    let operator = match &raw.operator {
        Some(o) => f
            .parse(o, |s| s.parse::<Extension>().map_err(|e| e.0))
            .and_then(|ext| {
                if in_own_blocks(&ext) {
                    Some((ext, f.line(&o.span())))
                } else {
                    f.error(
                        &o.span(),
                        format!("operator {ext} is not in this OPD's blocks"),
                    );
                    None
                }
            }),
        None => None,
    };

    let mut ext_refs = Vec::new();
    let groups = parse_groups(f, &raw.group, &mut ext_refs);
    let province_schedules = province.map_or(&[][..], |p| &p.schedules[..]);
    let schedules = parse_schedules(f, &raw.schedule, province_schedules);
    let schedule_known = |name: &str| {
        province.is_none()
            || schedules.iter().any(|s| s.name == name)
            || province_schedules.iter().any(|s| s.name == name)
    };
    let rules = parse_rules(f, &raw.rule, &groups, &schedule_known, &mut ext_refs);
    let dids = parse_dids(f, &raw.did, &groups, &schedule_known, &mut ext_refs);
    let mut rooms = parse_rooms(f, &raw.room, &schedule_known);
    if let Some(code) = &code {
        for r in &mut rooms {
            r.room.owner = Some(code.clone());
            if r.default_opds {
                r.room.opds = RoomAccess::Only(vec![code.clone()]);
            }
        }
    }

    let default_allow = province.map_or(
        ClassSet::default()
            .with(NumberClass::Internal)
            .with(NumberClass::Local),
        |p| p.default_permissions,
    );
    let permissions = parse_permissions(f, raw.permissions.as_ref(), default_allow, &blocks);
    let budget = budget::parse_budget(f, raw.budget.as_ref(), &blocks, &permissions, province);

    // Returned even when this file had errors (the load fails anyway), so the cross-file
    // checks still see its code and blocks.
    Some(ParsedOpd {
        opd: Opd {
            code: code?,
            name,
            blocks,
            reception,
            public_number,
            operator,
            dids,
            file: f.path.to_path_buf(),
            rules,
            groups,
            schedules,
            permissions,
            budget,
        },
        code_line,
        block_lines,
        ext_refs,
        rooms,
    })
}

fn parse_groups(
    f: &mut FileCtx<'_>,
    raw: &[RawGroup],
    ext_refs: &mut Vec<(Extension, usize)>,
) -> Vec<RingGroup> {
    let mut groups: Vec<RingGroup> = Vec::new();
    for g in raw {
        let line = f.line(&g.name.span());
        let name = f.parse(&g.name, name_token);
        if let Some(n) = &name {
            if let Some(prev) = groups.iter().find(|x| &x.name == n) {
                f.error(
                    &g.name.span(),
                    format!("group '{n}' is already defined on line {}", prev.line),
                );
            }
        }
        let timeout = match &g.timeout {
            Some(t) if !(1..=600).contains(t.get_ref()) => {
                f.error(&t.span(), "timeout must be 1 to 600 seconds");
                None
            }
            Some(t) => Some(*t.get_ref() as u32),
            None => None,
        };
        let strategy = f.parse(&g.strategy, |s| match s {
            "parallel" => Ok(Strategy::Parallel {
                timeout_secs: timeout.unwrap_or(30),
            }),
            "sequential" => Ok(Strategy::Sequential {
                member_timeout_secs: timeout.unwrap_or(15),
            }),
            _ => Err(format!("unknown strategy '{s}' (parallel or sequential)")),
        });
        let mut members: Vec<Extension> = Vec::new();
        if g.members.get_ref().is_empty() {
            f.error(&g.members.span(), "a group needs at least one member");
        }
        for m in g.members.get_ref() {
            if let Some(ext) = f.parse(m, |s| s.parse::<Extension>().map_err(|e| e.0)) {
                if members.contains(&ext) {
                    f.error(&m.span(), format!("member {ext} is listed twice"));
                }
                ext_refs.push((ext.clone(), f.line(&m.span())));
                members.push(ext);
            }
        }
        if let (Some(name), Some(strategy)) = (name, strategy) {
            groups.push(RingGroup {
                name,
                strategy,
                members,
                line,
            });
        }
    }
    groups
}

fn parse_schedules(
    f: &mut FileCtx<'_>,
    raw: &[RawSchedule],
    province: &[Schedule],
) -> Vec<Schedule> {
    let mut out: Vec<Schedule> = Vec::new();
    for s in raw {
        let line = f.line(&s.name.span());
        let Some(name) = f.parse(&s.name, name_token) else {
            continue;
        };
        if let Some(prev) = out.iter().find(|x| x.name == name) {
            f.error(
                &s.name.span(),
                format!("schedule '{name}' is already defined on line {}", prev.line),
            );
        }
        if province.iter().any(|x| x.name == name) {
            f.error(
                &s.name.span(),
                format!("schedule '{name}' is already defined in province.toml"),
            );
        }
        let mut periods = Vec::new();
        for p in &s.periods {
            let days = f.parse(&p.days, |d| {
                d.split(',').try_fold(Days::default(), |acc, part| {
                    Ok(acc.union(Days::parse(part)?))
                })
            });
            if p.hours.get_ref().is_empty() {
                f.error(&p.hours.span(), "a period needs at least one time range");
            }
            let hours: Vec<Hours> = p
                .hours
                .get_ref()
                .iter()
                .filter_map(|h| f.parse(h, Hours::parse))
                .collect();
            if let Some(days) = days {
                periods.push(Period { days, hours });
            }
        }
        if s.periods.is_empty() {
            f.error(&s.name.span(), "a schedule needs at least one period");
        }
        out.push(Schedule {
            name,
            periods,
            line,
        });
    }
    out
}

fn parse_rules(
    f: &mut FileCtx<'_>,
    raw: &[RawRule],
    groups: &[RingGroup],
    schedule_known: &dyn Fn(&str) -> bool,
    ext_refs: &mut Vec<(Extension, usize)>,
) -> Vec<Rule> {
    let mut rules = Vec::new();
    for r in raw {
        let line = f.line(&r.pattern.span());
        let pattern = f.parse(&r.pattern, |s| {
            s.parse::<Pattern>().map_err(|e| e.to_string())
        });
        let target = parse_target(f, &r.to, groups, pattern.as_ref(), ext_refs);
        let when = parse_when(
            f,
            &r.when,
            groups,
            pattern.as_ref(),
            schedule_known,
            ext_refs,
        );
        if let (Some(pattern), Some(target)) = (pattern, target) {
            rules.push(Rule {
                pattern,
                target,
                when,
                line,
            });
        }
    }
    let patterns: Vec<(&Pattern, usize)> = rules.iter().map(|r| (&r.pattern, r.line)).collect();
    check_ties(f, &patterns);
    rules
}

/// The `[[rule.when]]` (or `[[did.when]]`) entries of one rule: time conditions on known
/// schedules, each with its target.
fn parse_when(
    f: &mut FileCtx<'_>,
    raw: &[RawWhen],
    groups: &[RingGroup],
    pattern: Option<&Pattern>,
    schedule_known: &dyn Fn(&str) -> bool,
    ext_refs: &mut Vec<(Extension, usize)>,
) -> Vec<TimedTarget> {
    let mut when = Vec::new();
    for w in raw {
        let wline = f.line(&w.to.span());
        let condition = match (&w.during, &w.outside) {
            (Some(d), None) => Some((d, TimeCondition::During(d.get_ref().clone()))),
            (None, Some(o)) => Some((o, TimeCondition::Outside(o.get_ref().clone()))),
            _ => {
                f.error(
                    &w.to.span(),
                    "a 'when' entry needs exactly one of 'during' or 'outside' (a schedule name)",
                );
                None
            }
        };
        if let Some((name, _)) = &condition {
            if !schedule_known(name.get_ref()) {
                f.error(
                    &name.span(),
                    format!(
                        "unknown schedule '{}' (define it with [[schedule]] here or in province.toml)",
                        name.get_ref()
                    ),
                );
            }
        }
        let wtarget = parse_target(f, &w.to, groups, pattern, ext_refs);
        if let (Some((_, condition)), Some(target)) = (condition, wtarget) {
            when.push(TimedTarget {
                condition,
                target,
                line: wline,
            });
        }
    }
    when
}

/// The `[[did]]` tables of an OPD file: public numbers (any form, kept national) and where
/// inbound calls to them go (not the trunk), with time conditions like rules.
fn parse_dids(
    f: &mut FileCtx<'_>,
    raw: &[RawDid],
    groups: &[RingGroup],
    schedule_known: &dyn Fn(&str) -> bool,
    ext_refs: &mut Vec<(Extension, usize)>,
) -> Vec<Did> {
    let mut dids: Vec<Did> = Vec::new();
    for d in raw {
        let line = f.line(&d.number.span());
        let number = f.parse(&d.number, parse_public_number);
        if let Some(n) = &number {
            if let Some(prev) = dids.iter().find(|p| &p.number == n) {
                f.error(
                    &d.number.span(),
                    format!("public number {n} is already listed on line {}", prev.line),
                );
            }
        }
        let target = parse_target(f, &d.to, groups, None, ext_refs);
        let when = parse_when(f, &d.when, groups, None, schedule_known, ext_refs);
        let to_trunk =
            matches!(target, Some(Target::Trunk)) || when.iter().any(|w| w.target == Target::Trunk);
        if to_trunk {
            f.error(
                &d.to.span(),
                "a call from outside cannot be sent back to the trunk (ring an extension or a group, or alias a room)",
            );
            continue;
        }
        if let (Some(number), Some(target)) = (number, target) {
            dids.push(Did {
                number,
                target,
                when,
                line,
            });
        }
    }
    dids
}

/// The `[[room]]` tables of one file. The numbers, OPD codes and moderator extensions are
/// checked against the other files later ([`check_rooms`]); an OPD file's caller sets the
/// owner (and the owner-only default of `opds`).
fn parse_rooms(
    f: &mut FileCtx<'_>,
    raw: &[RawRoom],
    schedule_known: &dyn Fn(&str) -> bool,
) -> Vec<ParsedRoom> {
    let mut rooms = Vec::new();
    for r in raw {
        let line = f.line(&r.number.span());
        let number = f.parse(&r.number, |s| {
            if (3..=6).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(s.to_owned())
            } else {
                Err(format!("room number '{s}' must be 3 to 6 digits"))
            }
        });
        let name = r.name.get_ref().trim().to_owned();
        if name.is_empty() {
            f.error(&r.name.span(), "the room's name is empty");
        }
        let pin_of = |s: &str, what: &str| {
            if (4..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(s.to_owned())
            } else {
                Err(format!("{what} must be 4 to 8 digits"))
            }
        };
        let pin = r
            .pin
            .as_ref()
            .and_then(|p| f.parse(p, |s| pin_of(s, "pin")));
        let moderator_pin = r
            .moderator_pin
            .as_ref()
            .and_then(|p| f.parse(p, |s| pin_of(s, "moderator_pin")));
        if let (Some(p), Some(m), Some(raw_m)) = (&pin, &moderator_pin, &r.moderator_pin) {
            if p == m {
                f.error(&raw_m.span(), "moderator_pin must differ from pin");
            }
        }
        let max = match &r.max {
            Some(m) if !(2..=500).contains(m.get_ref()) => {
                f.error(&m.span(), "max must be 2 to 500 participants");
                50
            }
            // Holds: 2..=500 fits a u32.
            Some(m) => u32::try_from(*m.get_ref()).expect("checked range"),
            None => 50,
        };
        let video_mbps = match &r.video_mbps {
            Some(m) if !(1..=1000).contains(m.get_ref()) => {
                f.error(
                    &m.span(),
                    "video_mbps must be 1 to 1000 (Mbit/s the room may send)",
                );
                DEFAULT_VIDEO_MBPS
            }
            // Holds: 1..=1000 fits a u32.
            Some(m) => u32::try_from(*m.get_ref()).expect("checked range"),
            None => DEFAULT_VIDEO_MBPS,
        };

        let mut opd_lines = Vec::new();
        let opds = match &r.opds {
            None => RoomAccess::All,
            Some(list) => {
                if list.get_ref().is_empty() {
                    f.error(
                        &list.span(),
                        "opds needs at least one OPD code (leave it out for the default)",
                    );
                }
                let mut codes: Vec<OpdCode> = Vec::new();
                for c in list.get_ref() {
                    let Some(code) = f.parse(c, |s| s.parse::<OpdCode>().map_err(|e| e.0)) else {
                        continue;
                    };
                    if codes.contains(&code) {
                        f.error(&c.span(), format!("OPD '{code}' is listed twice"));
                        continue;
                    }
                    opd_lines.push(f.line(&c.span()));
                    codes.push(code);
                }
                RoomAccess::Only(codes)
            }
        };

        let mut moderators: Vec<Moderator> = Vec::new();
        let mut moderator_lines = Vec::new();
        for m in r.moderators.iter().flatten() {
            let entry = f.parse(m, |s| {
                if s.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse::<Extension>()
                        .map(Moderator::Extension)
                        .map_err(|e| format!("moderator '{s}': {}", e.0))
                } else {
                    s.parse::<OpdCode>().map(Moderator::Opd).map_err(|e| {
                        format!(
                            "moderator '{s}' must be an OPD code or an extension number: {}",
                            e.0
                        )
                    })
                }
            });
            let Some(entry) = entry else { continue };
            if moderators.contains(&entry) {
                f.error(
                    &m.span(),
                    format!("moderator '{}' is listed twice", m.get_ref()),
                );
                continue;
            }
            moderator_lines.push(f.line(&m.span()));
            moderators.push(entry);
        }

        let time = match (&r.during, &r.outside) {
            (None, None) => None,
            (Some(_), Some(o)) => {
                f.error(
                    &o.span(),
                    "a room takes at most one of 'during' or 'outside' (a schedule name)",
                );
                None
            }
            (Some(n), None) | (None, Some(n)) => {
                if schedule_known(n.get_ref()) {
                    let condition = if r.during.is_some() {
                        TimeCondition::During(n.get_ref().clone())
                    } else {
                        TimeCondition::Outside(n.get_ref().clone())
                    };
                    Some(RoomTime {
                        condition,
                        line: f.line(&n.span()),
                    })
                } else {
                    f.error(
                        &n.span(),
                        format!(
                            "unknown schedule '{}' (define it with [[schedule]] in this file or in \
                             province.toml)",
                            n.get_ref()
                        ),
                    );
                    None
                }
            }
        };

        if let Some(number) = number {
            rooms.push(ParsedRoom {
                room: Room {
                    number,
                    name,
                    pin,
                    moderator_pin,
                    max,
                    video_mbps,
                    opds,
                    moderators,
                    time,
                    file: f.path.to_path_buf(),
                    line,
                    owner: None,
                },
                opd_lines,
                moderator_lines,
                default_opds: r.opds.is_none(),
            });
        }
    }
    rooms
}

/// Two patterns of one file that can match the same number with the same specificity would
/// make the choice arbitrary: that is an error at the later one.
fn check_ties(f: &mut FileCtx<'_>, patterns: &[(&Pattern, usize)]) {
    for (j, (b, lb)) in patterns.iter().enumerate() {
        if let Some((a, la)) = patterns[..j]
            .iter()
            .find(|(a, _)| a.specificity() == b.specificity() && a.overlaps(b))
        {
            let reason = if a.as_str() == b.as_str() {
                format!("pattern '{b}' is already used on line {la}")
            } else {
                format!(
                    "pattern '{b}' ties with '{a}' on line {la}: both match some numbers with the same specificity"
                )
            };
            f.errors.push(err(f.path, *lb, reason));
        }
    }
}

fn parse_target(
    f: &mut FileCtx<'_>,
    raw: &Spanned<RawTarget>,
    groups: &[RingGroup],
    pattern: Option<&Pattern>,
    ext_refs: &mut Vec<(Extension, usize)>,
) -> Option<Target> {
    let t = raw.get_ref();
    let kinds = [
        t.extension.is_some(),
        t.group.is_some(),
        t.alias.is_some(),
        t.reject.is_some(),
        t.trunk.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        f.error(
            &raw.span(),
            "a target needs exactly one of: extension, group, alias, reject, trunk",
        );
        return None;
    }
    if let (Some(reason), None) = (&t.reason, &t.reject) {
        f.error(&reason.span(), "'reason' is only allowed with 'reject'");
        return None;
    }
    if let Some(e) = &t.extension {
        let ext = f.parse(e, |s| s.parse::<Extension>().map_err(|e| e.0))?;
        ext_refs.push((ext.clone(), f.line(&e.span())));
        Some(Target::Extension(ext))
    } else if let Some(g) = &t.group {
        if groups.iter().any(|x| &x.name == g.get_ref()) {
            Some(Target::Group(g.get_ref().clone()))
        } else {
            f.error(
                &g.span(),
                format!(
                    "unknown group '{}' (define it with [[group]] in this file)",
                    g.get_ref()
                ),
            );
            None
        }
    } else if let Some(a) = &t.alias {
        let alias = f.parse(a, |s| dial_string(s, "alias"))?;
        if pattern.is_some_and(|p| p.matches(&alias)) {
            f.error(
                &a.span(),
                format!("alias {alias} matches this rule's own pattern (a loop)"),
            );
            return None;
        }
        Some(Target::Alias(alias))
    } else if let Some(r) = &t.reject {
        let status = *r.get_ref();
        if !(400..=699).contains(&status) {
            f.error(
                &r.span(),
                format!("reject status {status} must be a SIP error status, 400 to 699"),
            );
            return None;
        }
        Some(Target::Reject {
            status: status as u16,
            reason: t.reason.as_ref().map(|r| r.get_ref().clone()),
        })
    } else if let Some(tr) = &t.trunk {
        if !*tr.get_ref() {
            f.error(
                &tr.span(),
                "'trunk = false' is not a target (write 'trunk = true' or another target)",
            );
            return None;
        }
        Some(Target::Trunk)
    } else {
        unreachable!("exactly one target kind was checked above")
    }
}

fn parse_permissions(
    f: &mut FileCtx<'_>,
    raw: Option<&RawPermissions>,
    default_allow: ClassSet,
    blocks: &[Block],
) -> Permissions {
    let Some(raw) = raw else {
        return Permissions {
            allow: default_allow,
            overrides: Vec::new(),
        };
    };
    let allow = raw
        .allow
        .as_ref()
        .map_or(default_allow, |a| parse_classes(f, a));
    let mut overrides: Vec<ExtensionPermissions> = Vec::new();
    for o in &raw.overrides {
        let line = f.line(&o.extensions.span());
        if o.extensions.get_ref().is_empty() {
            f.error(
                &o.extensions.span(),
                "an override needs at least one extension",
            );
        }
        let mut exts = Vec::new();
        for e in o.extensions.get_ref() {
            let Some(b) = f.parse(e, |s| parse_block(s, true)) else {
                continue;
            };
            let inside = blocks.iter().any(|own| {
                own.digits() == b.digits() && own.first <= b.first && b.last <= own.last
            });
            if !inside {
                f.error(&e.span(), format!("{b} is not inside this OPD's blocks"));
            } else if let Some(prev) = overrides
                .iter()
                .find(|p| p.extensions.iter().any(|x| x.overlaps(&b)))
            {
                f.error(
                    &e.span(),
                    format!(
                        "{b} is already covered by the override on line {}",
                        prev.line
                    ),
                );
            }
            exts.push(b);
        }
        let allow = parse_classes(f, &o.allow);
        overrides.push(ExtensionPermissions {
            extensions: exts,
            allow,
            line,
        });
    }
    Permissions { allow, overrides }
}

/// A list of class names; emergency is always added.
fn parse_classes(f: &mut FileCtx<'_>, raw: &[Spanned<String>]) -> ClassSet {
    let mut set = ClassSet::default().with(NumberClass::Emergency);
    for c in raw {
        if let Some(class) = f.parse(c, |s| {
            NumberClass::parse(s).ok_or_else(|| {
                format!(
                    "unknown number class '{s}' (internal, emergency, local, national, mobile, international)"
                )
            })
        }) {
            set = set.with(class);
        }
    }
    set
}

fn parse_features(f: &mut FileCtx<'_>, raw: Option<&RawFeatures>) -> FeatureCodes {
    let mut codes = FeatureCodes::default();
    let Some(raw) = raw else { return codes };
    let fields = [
        (&raw.forward_on, &mut codes.forward_on),
        (&raw.forward_off, &mut codes.forward_off),
        (&raw.dnd_on, &mut codes.dnd_on),
        (&raw.dnd_off, &mut codes.dnd_off),
    ];
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (value, slot) in fields {
        let Some(v) = value else { continue };
        let ok = f.parse(v, |s| {
            let digits = s.strip_prefix('*').unwrap_or("");
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(s.to_owned())
            } else {
                Err(format!("feature code '{s}' must be '*' followed by digits"))
            }
        });
        if let Some(code) = ok {
            let line = f.line(&v.span());
            if let Some((_, l)) = seen.iter().find(|(c, _)| *c == code) {
                f.error(
                    &v.span(),
                    format!("feature code {code} is already used on line {l}"),
                );
            }
            seen.push((code.clone(), line));
            *slot = code;
        }
    }
    codes
}

/// `FIRST-LAST` (or, with `single`, also one number) of extensions with equal digit count.
fn parse_block(s: &str, single: bool) -> Result<Block, String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None if single => (s.trim(), s.trim()),
        None => {
            return Err(format!(
                "block '{s}' must be written FIRST-LAST, e.g. '2300-2499'"
            ))
        }
    };
    let first: Extension = a
        .parse()
        .map_err(|e: crate::types::InvalidIdentifier| format!("block '{s}': {}", e.0))?;
    let last: Extension = b
        .parse()
        .map_err(|e: crate::types::InvalidIdentifier| format!("block '{s}': {}", e.0))?;
    if a.len() != b.len() {
        return Err(format!(
            "block '{s}': both ends must have the same number of digits"
        ));
    }
    if first.value() > last.value() {
        return Err(format!("block '{s}': the first number is above the last"));
    }
    Ok(Block {
        first: first.value(),
        last: last.value(),
    })
}

/// `host:port` or `[v6]:port`.
/// The carriers, sorted by priority (file order among equals). Names are unique, a carrier
/// that registers names its username and realm, and there is at least one carrier.
fn parse_trunks(f: &mut FileCtx<'_>, raw: &[RawTrunk], one_table: bool) -> Vec<Trunk> {
    let mut trunks: Vec<Trunk> = Vec::new();
    if raw.is_empty() {
        f.errors.push(err(
            f.path,
            0,
            "at least one [[trunk]] (a carrier) is required".into(),
        ));
    }
    for (i, t) in raw.iter().enumerate() {
        let line = f.line(&t.name.as_ref().map_or(t.target.span(), |n| n.span()));
        let name = match &t.name {
            Some(n) => f.parse(n, |s| {
                if !s.is_empty()
                    && s.len() <= 32
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    Ok(s.to_owned())
                } else {
                    Err(format!(
                        "trunk name '{s}' must be 1 to 32 lowercase letters, digits or '-'"
                    ))
                }
            }),
            None if one_table => Some("trunk".to_owned()),
            None => {
                f.error(
                    &t.target.span(),
                    "a [[trunk]] needs a name (e.g. name = \"telkom\")",
                );
                None
            }
        };
        if let Some(n) = &name {
            if let Some(prev) = trunks.iter().find(|p| &p.name == n) {
                f.error(
                    &t.target.span(),
                    format!("trunk '{n}' is already defined on line {}", prev.line),
                );
            }
        }
        let hostport = f.parse(&t.target, parse_host_port);
        let transport = f.parse(&t.transport, |s| match s.parse::<Transport>() {
            Ok(tr @ (Transport::Udp | Transport::Tcp | Transport::Tls)) => Ok(tr),
            Ok(_) => Err(format!("trunk transport '{s}' must be udp, tcp or tls")),
            Err(e) => Err(e.0),
        });
        let priority = match &t.priority {
            Some(p) if !(0..=1000).contains(p.get_ref()) => {
                f.error(
                    &p.span(),
                    "priority must be 0 to 1000 (lower is tried first)",
                );
                None
            }
            Some(p) => Some(*p.get_ref() as u32),
            None => Some(i as u32 + 1),
        };
        let area = match &t.area_code {
            Some(a) => f.parse(a, |s| {
                if s.len() >= 2
                    && s.len() <= 5
                    && s.starts_with('0')
                    && s.bytes().all(|b| b.is_ascii_digit())
                {
                    Ok(Some(s.to_owned()))
                } else {
                    Err(format!(
                        "area code '{s}' must be 0 and 1 to 4 digits, e.g. '0536'"
                    ))
                }
            }),
            None => Some(None),
        };
        let number_format = match (&t.number_format, area) {
            (None, Some(_)) => Some(NumberFormat::National),
            (Some(v), Some(area)) => f.parse(v, |s| match (s, area) {
                ("e164", _) => Ok(NumberFormat::E164),
                ("national", _) => Ok(NumberFormat::National),
                ("local", Some(area)) => Ok(NumberFormat::Local { area }),
                ("local", None) => Err(
                    "number_format 'local' needs area_code (e.g. area_code = \"0536\")".to_owned(),
                ),
                _ => Err(format!(
                    "unknown number_format '{s}' (e164, national or local)"
                )),
            }),
            (_, None) => None,
        };
        let caller_id = match &t.caller_id {
            Some(v) => f.parse(v, |s| match s {
                "pai" => Ok(CallerIdPlacement::Pai),
                "from" => Ok(CallerIdPlacement::From),
                "both" => Ok(CallerIdPlacement::Both),
                _ => Err(format!("unknown caller_id '{s}' (pai, from or both)")),
            }),
            None => Some(CallerIdPlacement::Pai),
        };
        let did_from = match &t.did_from {
            Some(v) => f.parse(v, |s| match s {
                "request-uri" => Ok(DidSource::RequestUri),
                "to" => Ok(DidSource::To),
                _ => Err(format!("unknown did_from '{s}' (request-uri or to)")),
            }),
            None => Some(DidSource::RequestUri),
        };
        let secs = |f: &mut FileCtx<'_>,
                    v: &Option<Spanned<i64>>,
                    range: std::ops::RangeInclusive<i64>,
                    default: u32,
                    what: &str| match v {
            Some(x) if !range.contains(x.get_ref()) => {
                f.error(
                    &x.span(),
                    format!(
                        "{what} must be {} to {} seconds",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
            Some(x) => Some(*x.get_ref() as u32),
            None => Some(default),
        };
        let mut codecs = Vec::new();
        for c in t.codecs.iter().flatten() {
            if let Some(c) = f.parse(c, |s| {
                if !s.is_empty()
                    && s.len() <= 32
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    Ok(s.to_ascii_uppercase())
                } else {
                    Err(format!("codec '{s}' must be an encoding name, e.g. 'PCMA'"))
                }
            }) {
                codecs.push(c);
            }
        }
        if t.codecs.as_ref().is_some_and(|c| c.is_empty()) {
            f.error(
                &t.target.span(),
                "codecs = [] would take no call: leave it out to take any",
            );
        }
        let mut inbound_from = Vec::new();
        for a in t.inbound_from.iter().flatten() {
            if let Some(c) = f.parse(a, |s| {
                s.parse::<crate::guard::Cidr>().map_err(|e| {
                    format!("inbound_from: {e} (the carrier's addresses its calls come from)")
                })
            }) {
                inbound_from.push(c);
            }
        }
        let ping_secs = secs(f, &t.ping_secs, 0..=3600, 30, "ping_secs");
        let timeout_secs = secs(f, &t.timeout_secs, 1..=60, 5, "timeout_secs");
        let register = match &t.register {
            None => Some(None),
            Some(r) => {
                let username = f.parse(&r.username, |s| {
                    if !s.is_empty() && !s.bytes().any(|b| b <= b' ' || b"\"@:;<>".contains(&b)) {
                        Ok(s.to_owned())
                    } else {
                        Err(format!("register.username '{s}' must be a SIP user name"))
                    }
                });
                let realm = f.parse(&r.realm, |s| {
                    if !s.is_empty() && !s.bytes().any(|b| b < b' ' || b == b'"') {
                        Ok(s.to_owned())
                    } else {
                        Err(format!("register.realm '{s}' must be the carrier's realm"))
                    }
                });
                let domain = match &r.domain {
                    Some(d) => f.parse(d, |s| {
                        if !s.is_empty()
                            && s.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                        {
                            Ok(Some(s.to_owned()))
                        } else {
                            Err(format!(
                                "register.domain '{s}' must be a host name or address"
                            ))
                        }
                    }),
                    None => Some(None),
                };
                let expires = secs(f, &r.expires_secs, 60..=86400, 600, "register.expires_secs");
                match (username, realm, domain, expires, &hostport) {
                    (
                        Some(username),
                        Some(realm),
                        Some(domain),
                        Some(expires_secs),
                        Some((host, _)),
                    ) => Some(Some(TrunkRegistration {
                        username,
                        realm,
                        domain: domain.unwrap_or_else(|| host.clone()),
                        expires_secs,
                    })),
                    _ => None,
                }
            }
        };
        let tls = match (&transport, &hostport) {
            (Some(Transport::Tls), Some((host, _))) => {
                let name = match &t.tls_name {
                    Some(n) => f.parse(n, |s| {
                        if !s.is_empty()
                            && s.len() <= 253
                            && s.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
                        {
                            Ok(s.to_ascii_lowercase())
                        } else {
                            Err(format!(
                                "tls_name '{s}' must be the host name on the carrier's certificate, e.g. 'sip.telkom.co.id'"
                            ))
                        }
                    }),
                    None => Some(host.clone()),
                };
                let ca = match &t.tls_ca {
                    Some(c) => f.parse(c, |s| {
                        if s.trim().is_empty() {
                            return Err("tls_ca must name a PEM file of CA certificates".to_owned());
                        }
                        let p = std::path::Path::new(s);
                        Ok(if p.is_absolute() {
                            p.to_path_buf()
                        } else {
                            f.path.parent().unwrap_or(std::path::Path::new(".")).join(p)
                        })
                    }),
                    None => Some(PathBuf::from(super::DEFAULT_TRUNK_CA)),
                };
                match (name, ca) {
                    (Some(server_name), Some(ca_file)) => Some(Some(TrunkTls {
                        server_name,
                        ca_file,
                    })),
                    _ => None,
                }
            }
            _ => {
                for v in [&t.tls_name, &t.tls_ca].into_iter().flatten() {
                    f.error(&v.span(), "tls_name and tls_ca are for transport = \"tls\"");
                }
                Some(None)
            }
        };
        if let (
            Some(name),
            Some((host, port)),
            Some(transport),
            Some(priority),
            Some(number_format),
            Some(caller_id),
            Some(did_from),
            Some(ping_secs),
            Some(timeout_secs),
            Some(register),
            Some(tls),
        ) = (
            name,
            hostport,
            transport,
            priority,
            number_format,
            caller_id,
            did_from,
            ping_secs,
            timeout_secs,
            register,
            tls,
        ) {
            trunks.push(Trunk {
                name,
                host,
                port,
                transport,
                priority,
                number_format,
                caller_id,
                did_from,
                ping_secs,
                timeout_secs,
                register,
                codecs,
                tls,
                inbound_from,
                line,
            });
        }
    }
    // Stable: file order among equal priorities.
    trunks.sort_by_key(|t| t.priority);
    trunks
}

/// A public telephone number (`05363231110`, `+62 536 3231110`), kept in the national form.
fn parse_public_number(s: &str) -> Result<String, String> {
    let n = crate::trunk::number::to_national(s);
    if n.len() >= 9
        && n.len() <= 14
        && n.starts_with('0')
        && !n.starts_with("00")
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        Ok(n)
    } else {
        Err(format!(
            "public number '{s}' must be a national number with its area code, e.g. '05363231110' or '+625363231110'"
        ))
    }
}

fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("trunk target '{s}' must be host:port, e.g. '127.0.0.1:5090'");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or_else(bad)?;
        (h, p.strip_prefix(':').ok_or_else(bad)?)
    } else {
        let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
        if h.contains(':') {
            return Err(bad());
        }
        (h, p)
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if !host_ok || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// A number to dial: digits, `*`, `#`, `+`.
fn dial_string(s: &str, what: &str) -> Result<String, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b"*#+".contains(&b)) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{what} '{s}' must be a number (digits, '*', '#', '+')"
        ))
    }
}

/// A group or schedule name: lowercase letters, digits, `-`, `_`.
fn name_token(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "name '{s}' must be lowercase letters, digits, '-' or '_'"
        ))
    }
}
