//! SDP (RFC 4566 / RFC 3264) as the media relay needs it: read where each stream's media goes
//! (connection address, port, RTCP port, rtcp-mux, direction), and rewrite the `c=` addresses,
//! the `m=` ports and `a=rtcp:` so the media flows through the relay, leaving every other byte
//! as it was (codecs, fmtp, telephone-event, ptime, direction attributes, unknown lines).
//!
//! Why our own splice instead of an SDP crate: `webrtc-sdp` and `sdp` parse into a model and
//! serialise it back, which reorders or normalises lines and drops what they do not know;
//! phones compare answers byte for byte with their offers more often than one would like.
//! (docs/decisions.md.) No I/O; never panics on input.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::Bytes;

/// Why a body is not SDP we can relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("sdp: not UTF-8")]
    NotUtf8,
    #[error("sdp: line {0} is malformed")]
    Line(usize),
    #[error("sdp: no connection address for stream {0}")]
    NoConnection(usize),
    #[error("sdp: {0} ports given for {1} streams")]
    PortCount(usize, usize),
}

/// Media direction (RFC 3264 §5.1), as the hold logic reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub kind: String,
    pub port: u16,
    /// Effective connection address (media-level `c=`, else session-level).
    pub address: Option<IpAddr>,
    /// `a=rtcp:PORT`, if present.
    pub rtcp_port: Option<u16>,
    pub rtcp_mux: bool,
    pub direction: Direction,
    /// The RTP clock rate of the first format (`a=rtpmap`, or 8000 for the static audio
    /// types), for the relay's jitter; `None` when unknown.
    pub clock_rate: Option<u32>,
    /// The first format of the `m=` line.
    first_format: Option<u8>,
}

impl Stream {
    /// A stream with port 0 is disabled (RFC 3264 §6).
    pub fn is_disabled(&self) -> bool {
        self.port == 0
    }
}

/// What a body says about its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub streams: Vec<Stream>,
}

struct Line<'a> {
    start: usize,
    end: usize,
    text: &'a str,
}

fn lines(body: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in body.match_indices('\n') {
        let mut end = i;
        if end > start && body.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        out.push(Line {
            start,
            end,
            text: &body[start..end],
        });
        start = i + 1;
    }
    if start < body.len() {
        out.push(Line {
            start,
            end: body.len(),
            text: &body[start..],
        });
    }
    out
}

/// `c=IN IP4 192.0.2.1` → the address (a multicast TTL suffix is ignored).
fn parse_connection(v: &str) -> Option<IpAddr> {
    let mut it = v.split_whitespace();
    let (net, kind, addr) = (it.next()?, it.next()?, it.next()?);
    if net != "IN" || !matches!(kind, "IP4" | "IP6") {
        return None;
    }
    addr.split('/').next()?.parse().ok()
}

/// Reads the streams of an SDP body.
pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut session_addr = None;
    let mut session_dir = Direction::SendRecv;
    let mut streams: Vec<Stream> = Vec::new();
    for (n, line) in lines(text).iter().enumerate() {
        let t = line.text;
        if t.is_empty() {
            continue;
        }
        let (key, value) = t.split_once('=').ok_or(SdpError::Line(n + 1))?;
        let current = streams.last_mut();
        match (key, current) {
            ("c", None) => session_addr = parse_connection(value),
            ("c", Some(s)) => s.address = parse_connection(value),
            ("m", _) => {
                let mut it = value.split_whitespace();
                let kind = it.next().ok_or(SdpError::Line(n + 1))?;
                let port = it
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or(SdpError::Line(n + 1))?;
                let _proto = it.next();
                let first_format = it.next().and_then(|f| f.parse::<u8>().ok());
                streams.push(Stream {
                    kind: kind.to_string(),
                    port,
                    address: session_addr,
                    rtcp_port: None,
                    rtcp_mux: false,
                    direction: session_dir,
                    // RFC 3551: the static types a phone sends without rtpmap are 8 kHz.
                    clock_rate: first_format.filter(|f| *f < 35).map(|_| 8000),
                    first_format,
                });
            }
            ("a", cur) => {
                let dir = match value {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                match (cur, dir) {
                    (None, Some(d)) => session_dir = d,
                    (Some(s), Some(d)) => s.direction = d,
                    (Some(s), None) if value == "rtcp-mux" => s.rtcp_mux = true,
                    (Some(s), None) if value.starts_with("rtpmap:") => {
                        let mut f = value["rtpmap:".len()..].split_whitespace();
                        let pt = f.next().and_then(|p| p.parse::<u8>().ok());
                        let rate = f
                            .next()
                            .and_then(|c| c.split('/').nth(1))
                            .and_then(|r| r.parse::<u32>().ok());
                        if pt.is_some() && pt == s.first_format {
                            s.clock_rate = rate.or(s.clock_rate);
                        }
                    }
                    (Some(s), None) => {
                        if let Some(rest) = value.strip_prefix("rtcp:") {
                            s.rtcp_port =
                                rest.split_whitespace().next().and_then(|p| p.parse().ok());
                        }
                    }
                    (None, None) => {}
                }
            }
            _ => {}
        }
    }
    Ok(Sdp { streams })
}

/// The byte range of the port number in an `m=` value: the second whitespace-separated field,
/// up to a `/` (`m=audio 4000/2 RTP/AVP 0` → `4000`).
fn port_span(v: &str) -> Option<std::ops::Range<usize>> {
    let mut fields = v
        .char_indices()
        .filter(|&(i, c)| {
            !c.is_whitespace() && v[..i].chars().next_back().is_none_or(char::is_whitespace)
        })
        .map(|(i, _)| i);
    let _kind = fields.next()?;
    let start = fields.next()?;
    let len = v[start..]
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(v.len() - start);
    Some(start..start + len)
}

/// Where one stream's media must go after the rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPorts {
    pub rtp: u16,
    /// The RTCP port announced in `a=rtcp:` (when the offer had one).
    pub rtcp: u16,
}

/// Rewrites a body so that every enabled stream points at `addr` with the given ports
/// (one entry per `m=` line, in order; disabled streams keep port 0). Session-level `c=` is
/// rewritten too; `o=` and everything else stays byte-identical.
pub fn rewrite(body: &[u8], addr: IpAddr, ports: &[RelayPorts]) -> Result<Bytes, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let sdp = parse(body)?;
    if ports.len() != sdp.streams.len() {
        return Err(SdpError::PortCount(ports.len(), sdp.streams.len()));
    }
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = String::with_capacity(text.len() + 32);
    let mut last = 0;
    let mut stream: Option<usize> = None;
    let splice = |out: &mut String, last: &mut usize, line: &Line<'_>, new: &str| {
        out.push_str(&text[*last..line.start]);
        out.push_str(new);
        *last = line.end;
    };
    for line in lines(text) {
        let t = line.text;
        if let Some(v) = t.strip_prefix("m=") {
            let i = stream.map_or(0, |s| s + 1);
            stream = Some(i);
            let disabled = sdp.streams[i].is_disabled();
            if !disabled {
                // m=<media> <port>[/<n>] <proto> <fmt>…: only the port digits change, found
                // with the same whitespace rules `parse` reads them with.
                let port = port_span(v).expect("parse read a port on this m= line");
                let new = format!("m={}{}{}", &v[..port.start], ports[i].rtp, &v[port.end..]);
                splice(&mut out, &mut last, &line, &new);
            }
        } else if let Some(v) = t.strip_prefix("c=") {
            let disabled = stream.is_some_and(|i| sdp.streams[i].is_disabled());
            if !disabled && parse_connection(v).is_some() {
                splice(&mut out, &mut last, &line, &format!("c=IN {family} {addr}"));
            }
        } else if let Some(v) = t.strip_prefix("a=rtcp:") {
            if let Some(i) = stream.filter(|&i| !sdp.streams[i].is_disabled()) {
                let mut new = String::new();
                let _ = write!(new, "a=rtcp:{}", ports[i].rtcp);
                // `a=rtcp:PORT IN IP4 addr` carries an address too (RFC 3605).
                if v.split_whitespace().count() >= 4 {
                    let _ = write!(new, " IN {family} {addr}");
                }
                splice(&mut out, &mut last, &line, &new);
            }
        }
    }
    out.push_str(&text[last..]);
    for (i, s) in sdp.streams.iter().enumerate() {
        if !s.is_disabled() && s.address.is_none() {
            return Err(SdpError::NoConnection(i));
        }
    }
    Ok(Bytes::from(out))
}

/// The encoding name of a static RTP payload type (RFC 3551) the province's phones use.
fn static_encoding(pt: &str) -> Option<&'static str> {
    Some(match pt {
        "0" => "PCMU",
        "3" => "GSM",
        "4" => "G723",
        "8" => "PCMA",
        "9" => "G722",
        "18" => "G729",
        _ => return None,
    })
}

/// The lines of the `stream`th media section: its m-line's index and the index of the next
/// m-line (or the end).
fn section_bounds(lines: &[&str], stream: usize) -> Option<(usize, usize)> {
    let start = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("m="))
        .nth(stream)?
        .0;
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("m="))
        .map_or(lines.len(), |p| start + 1 + p);
    Some((start, end))
}

/// The audio formats of the `stream`th m-line: (payload type, encoding as the rtpmap or the
/// static table names it, lower-cased, e.g. `opus/48000/2`, `pcmu/8000`), in offer order.
pub fn formats_of(body: &[u8], stream: usize) -> Option<Vec<(u8, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let (start, end) = section_bounds(&lines, stream)?;
    let section = &lines[start + 1..end];
    let pts = lines[start]
        .split(' ')
        .skip(3)
        .filter_map(|p| p.trim().parse::<u8>().ok());
    Some(
        pts.map(|pt| {
            let enc = section
                .iter()
                .find_map(|l| {
                    let (p, enc) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
                    (p.parse::<u8>().ok()? == pt).then(|| enc.trim().to_ascii_lowercase())
                })
                .or_else(|| {
                    static_encoding(&pt.to_string())
                        .map(|e| format!("{}/8000", e.to_ascii_lowercase()))
                })
                .unwrap_or_default();
            (pt, enc)
        })
        .collect(),
    )
}

/// The payload type of the first RFC 4733 `telephone-event` at `clock` Hz among `formats`
/// (as [`formats_of`] gives them).
pub fn telephone_event(formats: &[(u8, String)], clock: u32) -> Option<u8> {
    formats
        .iter()
        .find(|(_, e)| event_clock(e) == Some(clock))
        .map(|(pt, _)| *pt)
}

/// The clock of a `telephone-event/CLOCK` encoding.
pub fn event_clock(encoding: &str) -> Option<u32> {
    encoding.strip_prefix("telephone-event/")?.parse().ok()
}

/// The body with the `stream`th m-line's formats changed: `add` appends formats (payload
/// type, rtpmap encoding) after the ones there; otherwise the line gets exactly them, and
/// the section's `a=rtpmap`/`a=fmtp`/`a=rtcp-fb` lines of the formats it loses go (`fmtp`
/// lines of the new formats are written after their rtpmap). Other lines stay byte for byte.
pub fn set_formats(
    body: &[u8],
    stream: usize,
    formats: &[(u8, &str, Option<&str>)],
    add: bool,
) -> Option<Bytes> {
    let text = std::str::from_utf8(body).ok()?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let (start, end) = section_bounds(&lines, stream)?;
    let m = lines[start].trim_end();
    let eol = if lines[start].ends_with("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut fields: Vec<&str> = m.split(' ').collect();
    if fields.len() < 3 {
        return None;
    }
    let old: Vec<&str> = fields.split_off(3);
    let new: Vec<String> = formats.iter().map(|(pt, _, _)| pt.to_string()).collect();
    let kept: Vec<&str> = if add { old.clone() } else { Vec::new() };
    let mut out = String::with_capacity(text.len() + 64);
    for l in &lines[..start] {
        out.push_str(l);
    }
    let mut all: Vec<&str> = kept.clone();
    all.extend(new.iter().map(String::as_str).filter(|p| !kept.contains(p)));
    let _ = write!(out, "{} {}{eol}", fields.join(" "), all.join(" "));
    for (pt, enc, fmtp) in formats {
        if kept.contains(&pt.to_string().as_str()) {
            continue;
        }
        let _ = write!(out, "a=rtpmap:{pt} {enc}{eol}");
        if let Some(f) = fmtp {
            let _ = write!(out, "a=fmtp:{pt} {f}{eol}");
        }
    }
    for l in &lines[start + 1..end] {
        let gone = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().any(|prefix| {
            l.strip_prefix(prefix)
                .and_then(|rest| rest.split([' ', ':']).next())
                .is_some_and(|pt| !all.contains(&pt))
        });
        if !gone {
            out.push_str(l);
        }
    }
    for l in &lines[end..] {
        out.push_str(l);
    }
    Some(Bytes::from(out))
}

/// The offer with its audio formats cut to `allowed` encoding names (case-insensitive, e.g.
/// `PCMA`; `telephone-event` is always kept): the payload types of each audio `m=` line
/// and their `a=rtpmap`/`a=fmtp` lines. Other lines and other media stay byte for byte.
/// `None` when an audio stream would keep no codec but telephone-event.
pub fn keep_codecs(body: &[u8], allowed: &[String]) -> Option<Bytes> {
    let text = std::str::from_utf8(body).ok()?;
    let ok = |name: &str| {
        name.eq_ignore_ascii_case("telephone-event")
            || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
    };
    // Encoding of each payload type, per media section (rtpmap lines follow their m= line).
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let Some(m) = line.strip_prefix("m=audio ") else {
            out.push_str(line);
            i += 1;
            continue;
        };
        // This audio section: up to the next m= line.
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with("m="))
            .map_or(lines.len(), |p| i + 1 + p);
        let section = &lines[i + 1..end];
        let rtpmap = |pt: &str| {
            section.iter().find_map(|l| {
                let rest = l.strip_prefix("a=rtpmap:")?;
                let (p, enc) = rest.split_once(' ')?;
                (p == pt).then(|| enc.split('/').next().unwrap_or("").trim().to_owned())
            })
        };
        let eol = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
        let mut fields: Vec<&str> = m.trim_end().split(' ').collect();
        if fields.len() < 3 {
            return None;
        }
        let pts: Vec<&str> = fields.split_off(2);
        let kept: Vec<&str> = pts
            .iter()
            .copied()
            .filter(|pt| {
                rtpmap(pt)
                    .as_deref()
                    .or_else(|| static_encoding(pt))
                    .is_some_and(ok)
            })
            .collect();
        let has_voice = kept
            .iter()
            .any(|pt| !rtpmap(pt).is_some_and(|e| e.eq_ignore_ascii_case("telephone-event")));
        if !has_voice {
            return None;
        }
        let _ = write!(out, "m=audio {} {}{eol}", fields.join(" "), kept.join(" "));
        for l in section {
            let dropped = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().any(|prefix| {
                l.strip_prefix(prefix)
                    .and_then(|rest| rest.split([' ', ':']).next())
                    .is_some_and(|pt| pts.contains(&pt) && !kept.contains(&pt))
            });
            if !dropped {
                out.push_str(l);
            }
        }
        i = end;
    }
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_carrier_gets_only_the_codecs_it_takes() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 9 0 8 101 111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
            a=fmtp:101 0-15\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=ptime:20\r\n\
            m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        let allowed = vec!["pcma".to_owned(), "PCMU".to_owned()];
        let cut = keep_codecs(offer.as_bytes(), &allowed).unwrap();
        let cut = std::str::from_utf8(&cut).unwrap();
        assert!(cut.contains("m=audio 4000 RTP/AVP 0 8 101\r\n"), "{cut}");
        assert!(
            !cut.contains("opus") && !cut.contains("G722") && !cut.contains("useinbandfec"),
            "{cut}"
        );
        assert!(cut.contains("a=fmtp:101 0-15\r\na=ptime:20\r\n"), "{cut}");
        assert!(
            cut.ends_with("m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"),
            "{cut}"
        );
        assert!(parse(cut.as_bytes()).is_ok());
        // Nothing the carrier takes: no offer to it at all.
        assert!(keep_codecs(offer.as_bytes(), &["G729".to_owned()]).is_none());
    }
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 10.0.0.5\r\n\
s=-\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
m=audio 4000 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=rtcp:4001 IN IP4 10.0.0.5\r\n\
a=sendonly\r\n\
m=video 0 RTP/AVP 96\r\n\
m=video 5000 RTP/AVP 97\r\n\
c=IN IP4 10.0.0.6\r\n\
a=rtcp-mux\r\n";

    #[test]
    fn reads_streams() {
        let sdp = parse(OFFER.as_bytes()).unwrap();
        assert_eq!(sdp.streams.len(), 3);
        let a = &sdp.streams[0];
        assert_eq!(
            (a.port, a.rtcp_port, a.direction),
            (4000, Some(4001), Direction::SendOnly)
        );
        assert_eq!(a.address, Some("10.0.0.5".parse().unwrap()));
        assert!(sdp.streams[1].is_disabled());
        assert_eq!(a.clock_rate, Some(8000));
        let v = &sdp.streams[2];
        assert!(v.rtcp_mux);
        assert_eq!(v.clock_rate, None, "97 without an rtpmap");
        let video = parse(
            b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
        )
        .unwrap();
        assert_eq!(video.streams[0].clock_rate, Some(90000));
        assert_eq!(v.address, Some("10.0.0.6".parse().unwrap()));
    }

    #[test]
    fn formats_are_read_added_and_replaced_on_one_m_line() {
        let body = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 96 101\r\n\
a=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1\r\na=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\nm=video 4002 RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\n";
        assert_eq!(
            formats_of(body.as_bytes(), 0).unwrap(),
            vec![
                (96, "opus/48000/2".to_owned()),
                (101, "telephone-event/8000".to_owned())
            ]
        );
        assert_eq!(formats_of(body.as_bytes(), 1).unwrap()[0].1, "vp8/90000");
        assert!(formats_of(body.as_bytes(), 2).is_none());
        let added = set_formats(body.as_bytes(), 0, &[(0, "PCMU/8000", None)], true).unwrap();
        let added = std::str::from_utf8(&added).unwrap();
        assert!(added.contains("m=audio 4000 RTP/AVP 96 101 0\r\na=rtpmap:0 PCMU/8000\r\n"));
        assert!(added.contains("a=fmtp:96 stereo=1\r\n") && added.contains("m=video 4002"));
        let only = set_formats(body.as_bytes(), 0, &[(8, "PCMA/8000", None)], false).unwrap();
        let only = std::str::from_utf8(&only).unwrap();
        assert!(only.contains("m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv"));
        assert!(
            !only.contains("opus") && !only.contains("telephone-event"),
            "{only}"
        );
        assert!(only.ends_with("m=video 4002 RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\n"));
        assert!(set_formats(b"m=audio\r\n", 0, &[], true).is_none());
    }

    #[test]
    fn rewrites_only_addresses_and_ports() {
        let ports = [
            RelayPorts {
                rtp: 20000,
                rtcp: 20001,
            },
            RelayPorts { rtp: 0, rtcp: 0 },
            RelayPorts {
                rtp: 20010,
                rtcp: 20010,
            },
        ];
        let out = rewrite(OFFER.as_bytes(), "192.0.2.1".parse().unwrap(), &ports).unwrap();
        let expected = OFFER
            .replace("c=IN IP4 10.0.0.5", "c=IN IP4 192.0.2.1")
            .replace("c=IN IP4 10.0.0.6", "c=IN IP4 192.0.2.1")
            .replace("m=audio 4000", "m=audio 20000")
            .replace("m=video 5000", "m=video 20010")
            .replace(
                "a=rtcp:4001 IN IP4 10.0.0.5",
                "a=rtcp:20001 IN IP4 192.0.2.1",
            );
        // The o= line keeps the phone's address.
        let expected = expected.replace("o=- 1 2 IN IP4 192.0.2.1", "o=- 1 2 IN IP4 10.0.0.5");
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        let again = parse(&out).unwrap();
        assert_eq!(again.streams[0].direction, Direction::SendOnly);
        assert_eq!(again.streams[1].port, 0);
    }

    #[test]
    fn ipv6_relay_address() {
        let body = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 4000 RTP/AVP 0\r\n";
        let out = rewrite(
            body.as_bytes(),
            "2001:db8::1".parse().unwrap(),
            &[RelayPorts {
                rtp: 30000,
                rtcp: 30001,
            }],
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "v=0\r\nc=IN IP6 2001:db8::1\r\nm=audio 30000 RTP/AVP 0\r\n"
        );
    }

    /// Found while writing the `sdp_rewrite` fuzz target: `parse` reads the port as the second
    /// whitespace-separated field, but the rewrite split the line at single spaces, so a tab,
    /// a double space or a space after `m=` left the phone's own port in the SDP (media past
    /// the relay) and put the relay's port where the protocol goes.
    #[test]
    fn port_found_with_the_whitespace_parse_uses() {
        let one = [RelayPorts {
            rtp: 20000,
            rtcp: 20001,
        }];
        for (m, want) in [
            ("m=audio\t4000 RTP/AVP 0", "m=audio\t20000 RTP/AVP 0"),
            ("m=audio  4000/2  RTP/AVP 0", "m=audio  20000/2  RTP/AVP 0"),
            ("m= audio 4000 RTP/AVP 0", "m= audio 20000 RTP/AVP 0"),
            ("m=audio 4000", "m=audio 20000"),
        ] {
            let body = format!("v=0\r\nc=IN IP4 10.0.0.5\r\n{m}\r\n");
            let out = rewrite(body.as_bytes(), "192.0.2.1".parse().unwrap(), &one).unwrap();
            let want = format!("v=0\r\nc=IN IP4 192.0.2.1\r\n{want}\r\n");
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{m:?}");
            assert_eq!(parse(&out).unwrap().streams[0].port, 20000, "{m:?}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            rewrite(
                b"v=0\r\nm=audio 1 RTP/AVP 0\r\n",
                "1.2.3.4".parse().unwrap(),
                &[RelayPorts { rtp: 2, rtcp: 3 }]
            ),
            Err(SdpError::NoConnection(0))
        );
        assert!(parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }
}
