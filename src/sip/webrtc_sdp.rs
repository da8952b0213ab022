//! SDP between a browser (WebRTC: `UDP/TLS/RTP/SAVPF`, ICE, DTLS-SRTP, rtcp-mux, BUNDLE) and
//! a phone (plain `RTP/AVP`), as the gateway in the relay needs it.
//!
//! - [`read`] says what a browser's SDP asks of the gateway: ICE credentials, the DTLS
//!   fingerprint and role, the BUNDLE group and, per `m=` line, its mid, payload types and
//!   SSRCs. `None` when the body is not WebRTC.
//! - [`to_plain`] turns a browser's SDP into what a desk phone understands: `RTP/AVP` on the
//!   relay's ports, its codecs (without RED, FEC and RTX, which the relay does not carry to a
//!   phone), and none of the ICE/DTLS/BUNDLE/extmap/ssrc lines.
//! - [`to_webrtc`] turns a phone's SDP (or one made plain by [`to_plain`]) into what a
//!   browser needs: `UDP/TLS/RTP/SAVPF` on the gateway's one port for every `m=` line
//!   (BUNDLE), `a=ice-lite`, our ICE credentials and host candidate, our fingerprint, the
//!   DTLS role, `a=rtcp-mux`, the mids, our SSRC per stream, and NACK/PLI/FIR feedback for
//!   video.
//!
//! Codecs pass through untouched (same payload types, rtpmap and fmtp), so G.711 between a
//! browser and a phone is not transcoded. No I/O; never panics on input.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::Bytes;

use super::sdp::{RelayPorts, SdpError};

/// `a=setup` (RFC 4145/8842): who starts the DTLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    ActPass,
    /// DTLS client.
    Active,
    /// DTLS server.
    Passive,
}

impl Setup {
    fn parse(v: &str) -> Option<Setup> {
        match v.trim() {
            "actpass" => Some(Setup::ActPass),
            "active" => Some(Setup::Active),
            "passive" => Some(Setup::Passive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Setup::ActPass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
        }
    }
}

/// One `m=` section of a browser's SDP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub kind: String,
    pub port: u16,
    pub mid: Option<String>,
    /// Payload types in `m=` order.
    pub payloads: Vec<u8>,
    /// `a=rtpmap` codec names by payload type (lowercase `name/rate[/channels]`).
    pub rtpmaps: Vec<(u8, String)>,
    /// `a=fmtp` parameters by payload type.
    pub fmtps: Vec<(u8, String)>,
    /// SSRCs the browser announced it sends with (`a=ssrc:`).
    pub ssrcs: Vec<u32>,
    /// `a=extmap` ids and URIs.
    pub extmaps: Vec<(u8, String)>,
}

impl Section {
    /// The codec of payload type `pt` (`pcmu/8000`), static types included.
    pub fn codec(&self, pt: u8) -> Option<String> {
        self.rtpmaps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, c)| c.clone())
            .or_else(|| static_codec(pt).map(str::to_string))
    }

    /// The `a=fmtp` parameters of payload type `pt` (empty when none).
    pub fn fmtp(&self, pt: u8) -> &str {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map_or("", |(_, f)| f.as_str())
    }

    /// The id of the header extension `uri` (`a=extmap:ID URI`).
    pub fn extmap(&self, uri: &str) -> Option<u8> {
        self.extmaps
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(id, _)| *id)
    }
}

/// The RTP header extension that names a BUNDLEd stream's mid (RFC 8843).
pub const MID_EXTENSION: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// A section's own ICE credentials, fingerprint and role: (ufrag, pwd, fingerprint, setup).
type Transport = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Setup>,
);

/// What a WebRTC SDP says of its sender's transport and streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcSdp {
    pub ufrag: String,
    pub pwd: String,
    /// `sha-256 AB:CD:…` as written after `a=fingerprint:`.
    pub fingerprint: String,
    pub setup: Setup,
    /// The mids of `a=group:BUNDLE`, in order (empty: no BUNDLE).
    pub bundle: Vec<String>,
    pub sections: Vec<Section>,
}

/// Is this SDP a browser's (a secure profile with a DTLS fingerprint and ICE credentials)?
pub fn is_webrtc(body: &[u8]) -> bool {
    read(body).is_some()
}

/// Reads a WebRTC SDP; `None` when it is not one (no `UDP/TLS/RTP/SAVPF`-style profile, or
/// no ICE credentials or fingerprint for its first stream).
pub fn read(body: &[u8]) -> Option<WebRtcSdp> {
    let text = std::str::from_utf8(body).ok()?;
    let (mut s_ufrag, mut s_pwd, mut s_fp, mut s_setup) = (None, None, None, None);
    let mut bundle = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    // Per section: ufrag, pwd, fingerprint, setup.
    let mut per: Vec<Transport> = Vec::new();
    let mut secure = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let kind = f.next()?.to_string();
            let port = f.next()?.split('/').next()?.parse().ok()?;
            let proto = f.next()?;
            if sections.is_empty() {
                secure = proto.contains("SAVP") && proto.contains("RTP");
            }
            let payloads = f.filter_map(|p| p.parse().ok()).collect();
            sections.push(Section {
                kind,
                port,
                payloads,
                ..Section::default()
            });
            per.push((None, None, None, None));
            continue;
        }
        let Some(a) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = a.split_once(':').unwrap_or((a, ""));
        let cur = sections.last_mut();
        let slot = per.last_mut();
        match name {
            "ice-ufrag" => match slot {
                Some(p) => p.0 = Some(value.trim().to_string()),
                None => s_ufrag = Some(value.trim().to_string()),
            },
            "ice-pwd" => match slot {
                Some(p) => p.1 = Some(value.trim().to_string()),
                None => s_pwd = Some(value.trim().to_string()),
            },
            "fingerprint" => match slot {
                Some(p) => p.2 = Some(value.trim().to_string()),
                None => s_fp = Some(value.trim().to_string()),
            },
            "setup" => match slot {
                Some(p) => p.3 = Setup::parse(value),
                None => s_setup = Setup::parse(value),
            },
            "group" => {
                if let Some(mids) = value.strip_prefix("BUNDLE") {
                    bundle = mids.split_whitespace().map(str::to_string).collect();
                }
            }
            "mid" => {
                if let Some(s) = cur {
                    s.mid = Some(value.trim().to_string());
                }
            }
            "rtpmap" => {
                if let (Some(s), Some((pt, codec))) = (cur, value.split_once(' ')) {
                    if let Ok(pt) = pt.parse() {
                        s.rtpmaps.push((pt, codec.trim().to_ascii_lowercase()));
                    }
                }
            }
            "fmtp" => {
                if let (Some(s), Some((pt, params))) = (cur, value.split_once(' ')) {
                    if let Ok(pt) = pt.parse() {
                        s.fmtps.push((pt, params.trim().to_string()));
                    }
                }
            }
            "extmap" => {
                if let (Some(s), Some((id, uri))) = (cur, value.split_once(' ')) {
                    // `ID[/direction] URI [attributes]`
                    let id = id.split('/').next().and_then(|i| i.parse().ok());
                    if let (Some(id), Some(uri)) = (id, uri.split_whitespace().next()) {
                        s.extmaps.push((id, uri.to_string()));
                    }
                }
            }
            "ssrc" => {
                if let Some(s) = cur {
                    let ssrc = value.split_whitespace().next().and_then(|v| v.parse().ok());
                    if let Some(ssrc) = ssrc.filter(|x| !s.ssrcs.contains(x)) {
                        s.ssrcs.push(ssrc);
                    }
                }
            }
            _ => {}
        }
    }
    if !secure || sections.is_empty() {
        return None;
    }
    let first = per.first()?.clone();
    Some(WebRtcSdp {
        ufrag: first.0.or(s_ufrag)?,
        pwd: first.1.or(s_pwd)?,
        fingerprint: first.2.or(s_fp)?,
        setup: first.3.or(s_setup).unwrap_or(Setup::ActPass),
        bundle,
        sections,
    })
}

/// An `m=` value: media kind, port (before any `/count`) and the formats after the profile.
fn m_line(m: &str) -> Option<(&str, u16, Vec<&str>)> {
    let mut f = m.split_whitespace();
    let kind = f.next()?;
    let port = f.next()?.split('/').next()?.parse().ok()?;
    let _proto = f.next()?;
    Some((kind, port, f.collect()))
}

/// The codecs of the static payload types a browser and a phone share.
fn static_codec(pt: u8) -> Option<&'static str> {
    match pt {
        0 => Some("pcmu/8000"),
        8 => Some("pcma/8000"),
        9 => Some("g722/8000"),
        18 => Some("g729/8000"),
        _ => None,
    }
}

/// Payload types a phone leg does not get: redundancy, FEC and retransmission streams,
/// which the relay does not carry across the gateway.
fn dropped_for_phone(codec: &str) -> bool {
    let name = codec.split('/').next().unwrap_or("");
    matches!(name, "red" | "ulpfec" | "flexfec-03" | "rtx")
}

/// Attributes that belong to the browser's transport, not to a phone's SDP.
fn transport_attribute(name: &str) -> bool {
    matches!(
        name,
        "ice-ufrag"
            | "ice-pwd"
            | "ice-options"
            | "ice-lite"
            | "fingerprint"
            | "setup"
            | "candidate"
            | "end-of-candidates"
            | "mid"
            | "group"
            | "msid"
            | "msid-semantic"
            | "ssrc"
            | "ssrc-group"
            | "extmap"
            | "extmap-allow-mixed"
            | "rtcp-mux"
            | "rtcp-mux-only"
            | "rtcp-rsize"
            | "rtcp-fb"
            | "rtcp"
            | "crypto"
            | "sctp-port"
            | "max-message-size"
            | "sctpmap"
            | "rid"
            | "simulcast"
    )
}

/// The payload type an `a=rtpmap:`/`a=fmtp:`/`a=rtcp-fb:` value is about.
fn attribute_pt(value: &str) -> Option<u8> {
    value.split_whitespace().next()?.parse().ok()
}

/// A browser's SDP made plain for a phone: every enabled stream on `addr` and its relay
/// ports (`ports`, one per `m=` line), `RTP/AVP`, without RED/FEC/RTX payload types and
/// without the transport attributes. A stream left with no payload type is disabled (port 0).
pub fn to_plain(body: &[u8], addr: IpAddr, ports: &[RelayPorts]) -> Result<Bytes, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let parsed = read(body);
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = String::with_capacity(text.len());
    let mut section: Option<usize> = None;
    let mut dropped: Vec<u8> = Vec::new();
    let mut disabled = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            let i = section.map_or(0, |s| s + 1);
            section = Some(i);
            let port = ports
                .get(i)
                .ok_or(SdpError::PortCount(ports.len(), i + 1))?;
            let (kind, offered_port, fmts) = m_line(m).ok_or(SdpError::Line(i + 1))?;
            let codec_of = |pt: u8| {
                parsed
                    .as_ref()
                    .and_then(|p| p.sections.get(i))
                    .and_then(|s| s.codec(pt))
            };
            dropped.clear();
            let mut kept = Vec::new();
            for p in fmts {
                match p.parse::<u8>() {
                    Ok(pt) if codec_of(pt).is_some_and(|c| dropped_for_phone(&c)) => {
                        dropped.push(pt)
                    }
                    _ => kept.push(p),
                }
            }
            disabled = offered_port == 0 || kept.is_empty() || port.rtp == 0;
            if disabled {
                let fmt = kept.first().copied().unwrap_or("0");
                let _ = write!(out, "m={kind} 0 RTP/AVP {fmt}\r\n");
            } else {
                let _ = write!(out, "m={kind} {} RTP/AVP {}\r\n", port.rtp, kept.join(" "));
                let _ = write!(out, "c=IN {family} {addr}\r\n");
                if port.rtcp != port.rtp.wrapping_add(1) && port.rtcp != 0 {
                    let _ = write!(out, "a=rtcp:{}\r\n", port.rtcp);
                }
            }
            continue;
        }
        if line.starts_with("c=") {
            // Session level: rewritten; media level: written with the m= line above.
            if section.is_none() {
                let _ = write!(out, "c=IN {family} {addr}\r\n");
            }
            continue;
        }
        if let Some(a) = line.strip_prefix("a=") {
            let (name, value) = a.split_once(':').unwrap_or((a, ""));
            if transport_attribute(name) {
                continue;
            }
            if section.is_some() && (disabled && name != "inactive") {
                continue;
            }
            if matches!(name, "rtpmap" | "fmtp")
                && attribute_pt(value).is_some_and(|pt| dropped.contains(&pt))
            {
                continue;
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    Ok(Bytes::from(out))
}

/// What the gateway says of itself toward a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local<'a> {
    pub ufrag: &'a str,
    pub pwd: &'a str,
    /// `sha-256 AB:CD:…`.
    pub fingerprint: &'a str,
    pub setup: Setup,
    /// The mids to use, one per `m=` line (from the browser's offer when answering it).
    pub mids: &'a [String],
    /// Bundle the mids in `a=group:BUNDLE` (an offer always does; an answer when the
    /// browser's offer did).
    pub bundle: bool,
    /// Our SSRC toward the browser, one per `m=` line.
    pub ssrcs: &'a [u32],
    pub cname: &'a str,
    /// The id of the mid header extension (`a=extmap:ID urn:…:sdes:mid`), when used.
    pub mid_extension: Option<u8>,
}

/// A phone's (plain) SDP written for a browser: every enabled `m=` line on the gateway's one
/// `port` at `addr`, `UDP/TLS/RTP/SAVPF`, with the transport lines of `local`. Codecs, fmtp,
/// ptime and direction pass through; the phone's transport lines (`a=rtcp:`, `a=crypto`, …)
/// are dropped.
pub fn to_webrtc(
    body: &[u8],
    addr: IpAddr,
    port: u16,
    local: &Local<'_>,
) -> Result<Bytes, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = String::with_capacity(text.len() + 512);
    let mut section: Option<usize> = None;
    let mut disabled = false;
    let mut enabled_mids: Vec<&str> = Vec::new();
    let mut kind = String::new();
    let mut pts: Vec<u8> = Vec::new();
    let mut mapped: Vec<u8> = Vec::new();
    // Lines of the session part, and of each section, collected first: the BUNDLE group
    // (session level) names the enabled mids, known only at the end.
    let mut session = String::new();
    let mut sections: Vec<String> = Vec::new();
    let finish_section =
        |buf: &mut String, kind: &str, pts: &[u8], mapped: &[u8], i: usize, disabled: bool| {
            if disabled {
                return;
            }
            for pt in pts {
                if !mapped.contains(pt) {
                    if let Some(c) = static_codec(*pt) {
                        let name = c.split('/').next().unwrap_or("").to_ascii_uppercase();
                        let rate = c.split('/').nth(1).unwrap_or("8000");
                        let _ = write!(buf, "a=rtpmap:{pt} {name}/{rate}\r\n");
                    }
                }
            }
            if kind == "video" {
                for pt in pts {
                    let _ = write!(
                    buf,
                    "a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n"
                );
                }
            }
            if let Some(ssrc) = local.ssrcs.get(i) {
                let _ = write!(buf, "a=ssrc:{ssrc} cname:{}\r\n", local.cname);
            }
        };
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            if let Some(i) = section {
                let buf = sections.last_mut().expect("a section per m=");
                finish_section(buf, &kind, &pts, &mapped, i, disabled);
            }
            let i = section.map_or(0, |s| s + 1);
            section = Some(i);
            let (k, offered_port, fmts) = m_line(m).ok_or(SdpError::Line(i + 1))?;
            kind = k.to_string();
            pts = fmts.iter().filter_map(|p| p.parse().ok()).collect();
            mapped.clear();
            let mid = local.mids.get(i).map(String::as_str).unwrap_or("");
            disabled = offered_port == 0 || pts.is_empty() || mid.is_empty();
            let mut buf = String::new();
            if disabled {
                let _ = write!(
                    buf,
                    "m={kind} 0 UDP/TLS/RTP/SAVPF {}\r\n",
                    fmts.first().copied().unwrap_or("0")
                );
                let _ = write!(buf, "c=IN {family} {addr}\r\n");
                if !mid.is_empty() {
                    let _ = write!(buf, "a=mid:{mid}\r\n");
                }
                let _ = write!(buf, "a=inactive\r\n");
            } else {
                enabled_mids.push(mid);
                let pts_text: Vec<String> = pts.iter().map(u8::to_string).collect();
                let _ = write!(
                    buf,
                    "m={kind} {port} UDP/TLS/RTP/SAVPF {}\r\n",
                    pts_text.join(" ")
                );
                let _ = write!(buf, "c=IN {family} {addr}\r\n");
                let _ = write!(buf, "a=mid:{mid}\r\n");
                if let Some(id) = local.mid_extension {
                    let _ = write!(buf, "a=extmap:{id} {MID_EXTENSION}\r\n");
                }
                let _ = write!(
                    buf,
                    "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
                    local.ufrag, local.pwd
                );
                let _ = write!(
                    buf,
                    "a=fingerprint:{}\r\na=setup:{}\r\n",
                    local.fingerprint,
                    local.setup.as_str()
                );
                let _ = write!(buf, "a=rtcp-mux\r\n");
                let _ = write!(
                    buf,
                    "a=candidate:1 1 udp 2130706431 {addr} {port} typ host\r\na=end-of-candidates\r\n"
                );
            }
            sections.push(buf);
            continue;
        }
        if line.starts_with("c=") {
            continue;
        }
        if let Some(a) = line.strip_prefix("a=") {
            let (name, value) = a.split_once(':').unwrap_or((a, ""));
            if transport_attribute(name) {
                continue;
            }
            if section.is_some() {
                if disabled {
                    continue;
                }
                if matches!(name, "rtpmap" | "fmtp") {
                    match attribute_pt(value) {
                        Some(pt) if pts.contains(&pt) => {
                            if name == "rtpmap" {
                                mapped.push(pt);
                            }
                        }
                        _ => continue,
                    }
                }
            }
        }
        match section {
            None => {
                session.push_str(line);
                session.push_str("\r\n");
            }
            Some(_) => {
                let buf = sections.last_mut().expect("a section per m=");
                buf.push_str(line);
                buf.push_str("\r\n");
            }
        }
    }
    if let Some(i) = section {
        let buf = sections.last_mut().expect("a section per m=");
        finish_section(buf, &kind, &pts, &mapped, i, disabled);
    }
    out.push_str(&session);
    if local.bundle && !enabled_mids.is_empty() {
        let _ = write!(out, "a=group:BUNDLE {}\r\n", enabled_mids.join(" "));
    }
    out.push_str("a=ice-lite\r\na=msid-semantic: WMS\r\n");
    for s in sections {
        out.push_str(&s);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chromium's offer as JsSIP sends it (shortened: fewer codecs and extensions).
    const CHROME: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS stream\r\n\
m=audio 50000 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 127.0.0.1\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n\
a=ice-ufrag:Abcd\r\n\
a=ice-pwd:0123456789abcdefghijklmn\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendrecv\r\n\
a=msid:stream track\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:1234567 cname:abc\r\n\
a=ssrc:1234567 msid:stream track\r\n\
m=video 50000 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 127.0.0.1\r\n\
a=ice-ufrag:Abcd\r\n\
a=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 222 333\r\n\
a=ssrc:222 cname:abc\r\n\
a=ssrc:333 cname:abc\r\n";

    #[test]
    fn reads_a_browser_offer() {
        let w = read(CHROME.as_bytes()).expect("a WebRTC SDP");
        assert_eq!(w.ufrag, "Abcd");
        assert_eq!(w.pwd, "0123456789abcdefghijklmn");
        assert!(w.fingerprint.starts_with("sha-256 6B:8B"));
        assert_eq!(w.setup, Setup::ActPass);
        assert_eq!(w.bundle, vec!["0", "1"]);
        assert_eq!(w.sections.len(), 2);
        assert_eq!(w.sections[0].mid.as_deref(), Some("0"));
        assert_eq!(w.sections[0].ssrcs, vec![1234567]);
        assert_eq!(w.sections[1].ssrcs, vec![222, 333]);
        assert_eq!(w.sections[0].codec(0).as_deref(), Some("pcmu/8000"));
        assert_eq!(w.sections[1].codec(96).as_deref(), Some("vp8/90000"));
        assert_eq!(w.sections[0].fmtp(111), "minptime=10;useinbandfec=1");
        assert_eq!(w.sections[0].extmap(MID_EXTENSION), Some(4));
        assert!(read(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n").is_none());
        assert!(read(b"\xff\xfe").is_none());
    }

    #[test]
    fn a_browser_offer_made_plain_for_a_phone() {
        let ports = [
            RelayPorts {
                rtp: 20000,
                rtcp: 20001,
            },
            RelayPorts {
                rtp: 20002,
                rtcp: 20003,
            },
        ];
        let out = to_plain(CHROME.as_bytes(), "192.0.2.1".parse().unwrap(), &ports).unwrap();
        let out = std::str::from_utf8(&out).unwrap();
        assert!(
            out.contains("m=audio 20000 RTP/AVP 111 9 0 8 13 110 126\r\n"),
            "{out}"
        );
        assert!(out.contains("m=video 20002 RTP/AVP 96\r\n"), "{out}");
        for gone in [
            "ice-",
            "fingerprint",
            "setup",
            "candidate",
            "a=mid",
            "BUNDLE",
            "extmap",
            "ssrc",
            "rtcp-mux",
            "red/48000",
            "rtx/",
            "apt=96",
            "a=rtcp:9",
            "127.0.0.1\r\nm",
        ] {
            assert!(!out.contains(gone), "{gone} left in:\n{out}");
        }
        assert!(out.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert!(out.contains("a=fmtp:111 minptime=10;useinbandfec=1\r\n"));
        assert_eq!(out.matches("c=IN IP4 192.0.2.1").count(), 2);
        // It is plain SDP the relay's own parser reads, ports and all.
        let plain = super::super::sdp::parse(out.as_bytes()).unwrap();
        assert_eq!(plain.streams[0].port, 20000);
        assert!(!plain.streams[0].rtcp_mux);
        assert!(!is_webrtc(out.as_bytes()));
    }

    #[test]
    fn a_phone_answer_written_for_the_browser() {
        let phone = "v=0\r\no=baresip 1 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 126\r\na=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0-15\r\n\
a=rtcp:4001\r\na=sendrecv\r\na=ptime:20\r\nm=video 0 RTP/AVP 96\r\n";
        let mids = vec!["0".to_string(), "1".to_string()];
        let local = Local {
            ufrag: "tbUf",
            pwd: "tambunpassword0123456789",
            fingerprint: "sha-256 AA:BB",
            setup: Setup::Active,
            mids: &mids,
            bundle: true,
            ssrcs: &[1111, 2222],
            cname: "tambun",
            mid_extension: Some(4),
        };
        let out = to_webrtc(
            phone.as_bytes(),
            "192.0.2.1".parse().unwrap(),
            30000,
            &local,
        )
        .unwrap();
        let out = std::str::from_utf8(&out).unwrap();
        assert!(
            out.contains("a=group:BUNDLE 0\r\n"),
            "only enabled mids are bundled:\n{out}"
        );
        assert!(out.contains("a=ice-lite\r\n"));
        assert!(
            out.contains("m=audio 30000 UDP/TLS/RTP/SAVPF 0 126\r\n"),
            "{out}"
        );
        assert!(
            out.contains("a=rtpmap:0 PCMU/8000\r\n"),
            "a static type gets its rtpmap:\n{out}"
        );
        assert!(out.contains("a=fmtp:126 0-15\r\n"));
        assert!(out.contains("a=setup:active\r\n"));
        assert!(out.contains("a=fingerprint:sha-256 AA:BB\r\n"));
        assert!(out.contains("a=candidate:1 1 udp 2130706431 192.0.2.1 30000 typ host\r\n"));
        assert!(out.contains("a=ssrc:1111 cname:tambun\r\n"));
        assert!(out.contains("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"));
        assert!(out.contains("m=video 0 UDP/TLS/RTP/SAVPF 96\r\n"));
        assert!(!out.contains("a=rtcp:4001"), "{out}");
        assert!(
            !out.contains("10.0.0.5\r\nt="),
            "the connection is the gateway's:\n{out}"
        );
        let back = read(out.as_bytes()).expect("our own output reads as WebRTC");
        assert_eq!(back.ufrag, "tbUf");
        assert_eq!(back.setup, Setup::Active);
        assert_eq!(back.sections[0].mid.as_deref(), Some("0"));
    }

    #[test]
    fn garbage_does_not_panic() {
        let ports = [RelayPorts { rtp: 1, rtcp: 2 }];
        let local = Local {
            ufrag: "u",
            pwd: "p",
            fingerprint: "f",
            setup: Setup::ActPass,
            mids: &[],
            bundle: true,
            ssrcs: &[],
            cname: "c",
            mid_extension: None,
        };
        for body in [
            "",
            "m=",
            "m=audio",
            "m=audio x y",
            "a=rtpmap:\r\nm=audio 1 RTP/AVP\r\n",
            "m=audio 1 RTP/AVP 0\r\nm=audio 1 RTP/AVP 0\r\n",
        ] {
            let _ = to_plain(body.as_bytes(), "1.2.3.4".parse().unwrap(), &ports);
            let _ = to_webrtc(body.as_bytes(), "1.2.3.4".parse().unwrap(), 1, &local);
            let _ = read(body.as_bytes());
        }
    }
}
