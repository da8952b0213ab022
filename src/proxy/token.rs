//! Dialog integrity: how the switch recognises the dialogs it set up itself, so that a request
//! inside a dialog is forwarded only inside a dialog of ours and only toward its other party
//! (docs/decisions.md, "Dialog tokens"; docs/operations.md, "Security model").
//!
//! When the proxy Record-Routes a dialog-creating request it puts a **dialog token** in its own
//! Record-Route URI (`;tbd=…`): the dialog's two parties ([`Party`]: the authenticated caller and
//! the extension or trunk the dialplan sent the call to, each with the address the switch saw
//! or reached it at) and an HMAC-SHA256 under the switch's dialog secret over the Call-ID, the
//! caller's From tag and those parties. Every in-dialog request carries the token back in its
//! Route (RFC 3261 §12.2.1.1); [`DialogKey::open`] checks it and says which party sent the
//! request and which one it goes to. Nothing is kept per dialog, so the check survives a
//! restart of the switch (the secret is kept in the database).
//!
//! A branch MAC ([`DialogKey::branch_mac`]) does the same for the switch's Via branches: a
//! response that matches no transaction is forwarded statelessly only to the upstream address
//! the branch was made for.
//!
//! Pure: no I/O, no clock; the secret comes in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::sip::headers::{NameAddr, Uri};
use crate::types::{Extension, Transport};

/// The Record-Route URI parameter that carries the dialog token.
pub const TOKEN_PARAM: &str = "tbd";

/// Format version of the token (its first byte).
const VERSION: u8 = 1;
/// Bytes of HMAC-SHA256 kept in a token (96 bits).
const MAC_LEN: usize = 12;
/// Longest token accepted (two IPv6 parties with 10-digit extensions, encoded).
const MAX_TOKEN_CHARS: usize = 160;

/// One party of a dialog, as the switch set it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// An extension, at the address its request came from (the caller) or where the switch
    /// reached its registration (the callee).
    Extension {
        ext: Extension,
        addr: SocketAddr,
        transport: Transport,
    },
    /// The trunk the dialplan sent the call to.
    Trunk {
        addr: SocketAddr,
        transport: Transport,
    },
}

impl Party {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Party::Extension { addr, .. } | Party::Trunk { addr, .. } => *addr,
        }
    }

    pub fn transport(&self) -> Transport {
        match self {
            Party::Extension { transport, .. } | Party::Trunk { transport, .. } => *transport,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let (kind, ext) = match self {
            Party::Extension { ext, .. } => (b'e', ext.as_str()),
            Party::Trunk { .. } => (b't', ""),
        };
        out.push(kind);
        out.push(match self.transport() {
            Transport::Udp => b'u',
            Transport::Tcp => b'c',
            Transport::Tls => b's',
            Transport::Ws => b'w',
            Transport::Wss => b'W',
        });
        match self.addr().ip() {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&self.addr().port().to_be_bytes());
        // (extensions are 2 to 10 digits: the length fits a byte)
        out.push(ext.len() as u8);
        out.extend_from_slice(ext.as_bytes());
    }

    fn decode(input: &mut &[u8]) -> Option<Party> {
        let kind = take(input, 1)?[0];
        let transport = match take(input, 1)?[0] {
            b'u' => Transport::Udp,
            b'c' => Transport::Tcp,
            b's' => Transport::Tls,
            b'w' => Transport::Ws,
            b'W' => Transport::Wss,
            _ => return None,
        };
        let ip = match take(input, 1)?[0] {
            4 => {
                let o: [u8; 4] = take(input, 4)?.try_into().ok()?;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            6 => {
                let o: [u8; 16] = take(input, 16)?.try_into().ok()?;
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return None,
        };
        let port = u16::from_be_bytes(take(input, 2)?.try_into().ok()?);
        let addr = SocketAddr::new(ip, port);
        let len = take(input, 1)?[0] as usize;
        let ext = std::str::from_utf8(take(input, len)?).ok()?;
        match kind {
            b'e' => Some(Party::Extension {
                ext: ext.parse().ok()?,
                addr,
                transport,
            }),
            b't' if ext.is_empty() => Some(Party::Trunk { addr, transport }),
            _ => None,
        }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Extension {
                ext,
                addr,
                transport,
            } => write!(f, "extension {ext} at {addr}/{transport}"),
            Party::Trunk { addr, transport } => write!(f, "trunk at {addr}/{transport}"),
        }
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

/// An in-dialog request's token, opened: who sent it and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The party the request claims to come from (by its From tag).
    pub sender: Party,
    /// The other party: the only place the request may go.
    pub receiver: Party,
    /// The caller's From tag, the one the token was made for (the call records' key).
    pub caller_tag_is_from: bool,
}

/// Why an in-dialog request is not one of ours (the dialog layer's error; answered 481).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("no Route of this switch carries a dialog token")]
    NoToken,
    #[error("the dialog token is malformed")]
    Malformed,
    #[error("the dialog token does not match the Call-ID and tags (forged or another dialog)")]
    BadSignature,
    #[error("the request does not come from the dialog's party")]
    WrongSource,
    #[error("the tags do not match the answered call")]
    WrongTag,
    #[error("the dialog's other party cannot be reached")]
    Unreachable,
}

/// The switch's dialog secret. Its `Debug` does not show it.
pub struct DialogKey {
    secret: [u8; 32],
}

impl DialogKey {
    pub fn new(secret: [u8; 32]) -> DialogKey {
        DialogKey { secret }
    }

    /// A key for tests and for a switch without a database.
    pub fn random() -> DialogKey {
        use rand::RngCore;
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        DialogKey { secret }
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC-SHA256 takes a key of any length");
        for p in parts {
            // Length-prefixed, so that no two different part lists hash alike.
            mac.update(&(p.len() as u32).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The token for a dialog that `caller` (with From tag `caller_tag`) sets up with `callee`.
    pub fn seal(&self, call_id: &str, caller_tag: &str, caller: &Party, callee: &Party) -> String {
        let mut body = vec![VERSION];
        caller.encode(&mut body);
        callee.encode(&mut body);
        let mac = self.mac(&[b"dialog", call_id.as_bytes(), caller_tag.as_bytes(), &body]);
        body.extend_from_slice(&mac[..MAC_LEN]);
        base64url(&body)
    }

    /// Checks a token against an in-dialog request's Call-ID and tags. The caller's tag is the
    /// request's From tag when the caller sends it, its To tag when the callee does.
    pub fn open(
        &self,
        token: &str,
        call_id: &str,
        from_tag: Option<&str>,
        to_tag: Option<&str>,
    ) -> Result<Opened, DialogError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(DialogError::Malformed);
        }
        let raw = unbase64url(token).ok_or(DialogError::Malformed)?;
        if raw.len() < 1 + MAC_LEN || raw[0] != VERSION {
            return Err(DialogError::Malformed);
        }
        let (body, mac) = raw.split_at(raw.len() - MAC_LEN);
        let mut rest = &body[1..];
        let caller = Party::decode(&mut rest).ok_or(DialogError::Malformed)?;
        let callee = Party::decode(&mut rest).ok_or(DialogError::Malformed)?;
        if !rest.is_empty() {
            return Err(DialogError::Malformed);
        }
        let signed_by = |tag: Option<&str>| {
            tag.is_some_and(|t| {
                let want = self.mac(&[b"dialog", call_id.as_bytes(), t.as_bytes(), body]);
                constant_time_eq(&want[..MAC_LEN], mac)
            })
        };
        if signed_by(from_tag) {
            Ok(Opened {
                sender: caller,
                receiver: callee,
                caller_tag_is_from: true,
            })
        } else if signed_by(to_tag) {
            Ok(Opened {
                sender: callee,
                receiver: caller,
                caller_tag_is_from: false,
            })
        } else {
            Err(DialogError::BadSignature)
        }
    }

    /// The MAC that ends one of the switch's Via branches: binds the branch to the upstream
    /// address a stray response to it may be forwarded to. 12 hex digits.
    pub fn branch_mac(&self, branch: &str, upstream: SocketAddr) -> String {
        // The address as bytes, not as text: this runs for every request the proxy forwards.
        let ip = match upstream.ip().to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let port = upstream.port().to_be_bytes();
        let mac = self.mac(&[b"branch", branch.as_bytes(), &ip, &port]);
        hex::encode(&mac[..6])
    }
}

impl fmt::Debug for DialogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DialogKey(<secret>)")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (RFC 4648 §5): only URI-unreserved characters, so the token is a
/// plain URI parameter value.
fn base64url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The value of one base64url character ([`ALPHABET`] read backwards).
fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

fn unbase64url(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// The dialog token in the first of these Route/Record-Route values that has one.
pub fn token_in<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    values.into_iter().find_map(|v| {
        let na = NameAddr::parse(v).ok()?;
        let Ok(Uri::Sip(u)) = Uri::parse(na.uri) else {
            return None;
        };
        u.params.get(TOKEN_PARAM).flatten().map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(n: &str, addr: &str) -> Party {
        Party::Extension {
            ext: n.parse().unwrap(),
            addr: addr.parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    fn trunk() -> Party {
        Party::Trunk {
            addr: "[2001:db8::1]:5090".parse().unwrap(),
            transport: Transport::Tls,
        }
    }

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64url(&data);
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(unbase64url(&text).as_deref(), Some(&data[..]), "{len}");
        }
        assert_eq!(unbase64url("abcde"), None);
        assert_eq!(unbase64url("ab=c"), None);
    }

    #[test]
    fn a_token_opens_for_either_direction_of_its_own_dialog() {
        let key = DialogKey::new([7; 32]);
        let (a, b) = (ext("2300", "10.0.0.5:5060"), trunk());
        let token = key.seal("call-1", "tagA", &a, &b);
        assert!(token.len() < MAX_TOKEN_CHARS, "{}", token.len());
        // The caller sends: From tag is the caller's.
        let o = key
            .open(&token, "call-1", Some("tagA"), Some("tagB"))
            .unwrap();
        assert_eq!((o.sender, o.receiver), (a.clone(), b.clone()));
        assert!(o.caller_tag_is_from);
        // The callee sends: the caller's tag is in To.
        let o = key
            .open(&token, "call-1", Some("tagB"), Some("tagA"))
            .unwrap();
        assert_eq!((o.sender, o.receiver), (b, a));
        assert!(!o.caller_tag_is_from);
    }

    #[test]
    fn a_token_does_not_open_for_another_dialog_key_or_edit() {
        let key = DialogKey::new([7; 32]);
        let token = key.seal("call-1", "tagA", &ext("2300", "10.0.0.5:5060"), &trunk());
        let bad = |r| assert_eq!(r, Err(DialogError::BadSignature));
        bad(key
            .open(&token, "call-2", Some("tagA"), Some("x"))
            .map(|_| ()));
        bad(key
            .open(&token, "call-1", Some("tagX"), Some("tagY"))
            .map(|_| ()));
        bad(key.open(&token, "call-1", None, None).map(|_| ()));
        bad(DialogKey::new([8; 32])
            .open(&token, "call-1", Some("tagA"), None)
            .map(|_| ()));
        // Every single-character change of the token fails (malformed or bad signature).
        for i in 0..token.len() {
            let mut t = token.clone().into_bytes();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(t).unwrap();
            assert!(key.open(&t, "call-1", Some("tagA"), None).is_err(), "{i}");
        }
        assert_eq!(
            key.open("", "call-1", Some("tagA"), None),
            Err(DialogError::Malformed)
        );
        let long = "A".repeat(MAX_TOKEN_CHARS + 4);
        assert_eq!(
            key.open(&long, "call-1", Some("tagA"), None),
            Err(DialogError::Malformed)
        );
    }

    #[test]
    fn a_forged_party_breaks_the_signature() {
        let key = DialogKey::new([7; 32]);
        let (a, b) = (ext("2300", "10.0.0.5:5060"), ext("3500", "10.0.0.6:5060"));
        let token = key.seal("c", "t", &a, &b);
        // Same token, callee swapped for the trunk: re-encode the body with the old MAC.
        let raw = unbase64url(&token).unwrap();
        let mac = &raw[raw.len() - MAC_LEN..];
        let mut body = vec![VERSION];
        a.encode(&mut body);
        trunk().encode(&mut body);
        body.extend_from_slice(mac);
        assert_eq!(
            key.open(&base64url(&body), "c", Some("t"), None),
            Err(DialogError::BadSignature)
        );
    }

    #[test]
    fn branch_macs_depend_on_the_upstream_address() {
        let key = DialogKey::new([1; 32]);
        let up: SocketAddr = "10.0.0.5:5060".parse().unwrap();
        let m = key.branch_mac("abc.1", up);
        assert_eq!(m.len(), 12);
        assert_eq!(m, key.branch_mac("abc.1", up));
        assert_ne!(m, key.branch_mac("abc.1", "10.0.0.5:5061".parse().unwrap()));
        assert_ne!(m, key.branch_mac("abc.2", up));
    }
}
