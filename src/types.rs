//! Newtypes for the identifiers the switch passes around: extension numbers, OPD codes,
//! transports. Each is built only by its parser, so holding one means it is well formed.
//! And [`Now`], the clock reading every sans-IO core is handed.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The time as the sans-IO cores see it: a monotonic instant for deadlines and the wall clock
/// (Unix seconds) for nonces and what is stored.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix: u64,
    /// Wall clock in milliseconds, for call records.
    pub unix_ms: u64,
}

impl Now {
    /// The instant at which the Unix second `unix` falls, as seen from now.
    pub fn instant_at(&self, unix: i64) -> Instant {
        let delta = unix - self.unix as i64;
        if delta >= 0 {
            // Far beyond what an Instant holds (a corrupt row): a century is forever enough.
            let ahead = Duration::from_secs(delta as u64);
            self.instant
                .checked_add(ahead)
                .or_else(|| {
                    self.instant
                        .checked_add(Duration::from_secs(100 * 365 * 86_400))
                })
                .unwrap_or(self.instant)
        } else {
            self.instant
                .checked_sub(Duration::from_secs(delta.unsigned_abs()))
                .unwrap_or(self.instant)
        }
    }
}

/// Why a value is not a valid identifier; the message is meant for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIdentifier(pub String);

/// An extension number: 2 to 10 ASCII digits, not starting with `0` or `9` (those are the
/// operator and outside-line prefixes of the numbering plan).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Extension(String);

impl Extension {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number as an integer (extensions are at most 10 digits, so it fits).
    pub fn value(&self) -> u64 {
        // Holds: the parser admits only 2..=10 ASCII digits.
        self.0.parse().expect("extension is all digits")
    }
}

impl FromStr for Extension {
    type Err = InvalidIdentifier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(2..=10).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidIdentifier(format!(
                "'{s}' is not an extension number (2 to 10 digits)"
            )));
        }
        if s.starts_with('0') || s.starts_with('9') {
            return Err(InvalidIdentifier(format!(
                "'{s}' cannot be an extension: numbers starting with 0 or 9 are dialling prefixes"
            )));
        }
        Ok(Extension(s.to_owned()))
    }
}

impl TryFrom<String> for Extension {
    type Error = InvalidIdentifier;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Extension> for String {
    fn from(e: Extension) -> String {
        e.0
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The code of an OPD (regional office), e.g. `dinkes`: 1 to 32 characters of lowercase ASCII
/// letters, digits and `-`, starting with a letter. It is also the dialplan file's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OpdCode(String);

impl OpdCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OpdCode {
    type Err = InvalidIdentifier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=32).contains(&s.len())
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(OpdCode(s.to_owned()))
        } else {
            Err(InvalidIdentifier(format!(
                "'{s}' is not an OPD code (lowercase letters, digits and '-', starting with a letter)"
            )))
        }
    }
}

impl TryFrom<String> for OpdCode {
    type Error = InvalidIdentifier;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<OpdCode> for String {
    fn from(c: OpdCode) -> String {
        c.0
    }
}

impl fmt::Display for OpdCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The transport a SIP message came in on or leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// SIP over WebSocket (RFC 7118), plain: loopback or behind a TLS-terminating proxy.
    Ws,
    /// SIP over secure WebSocket (RFC 7118): browsers on the web listener.
    Wss,
}

impl Transport {
    /// The token used in Via headers (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Stream transports frame by Content-Length and have no retransmissions.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// WebSocket flows (RFC 7118): one message per frame, and no way to open a connection
    /// toward the peer (its Via and Contact hosts are `.invalid`): requests to it follow the
    /// connection it registered over.
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// Encrypted on the wire (TLS or WSS).
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        })
    }
}

impl FromStr for Transport {
    type Err = InvalidIdentifier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            "tls" => Ok(Transport::Tls),
            "ws" => Ok(Transport::Ws),
            "wss" => Ok(Transport::Wss),
            _ => Err(InvalidIdentifier(format!(
                "'{s}' is not a transport (udp, tcp, tls, ws, wss)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_parsing() {
        assert!("1000".parse::<Extension>().is_ok());
        assert!("0".parse::<Extension>().is_err());
        assert!("0100".parse::<Extension>().is_err());
        assert!("9123".parse::<Extension>().is_err());
        assert!("12a4".parse::<Extension>().is_err());
        assert!("12345678901".parse::<Extension>().is_err());
    }

    #[test]
    fn opd_code_parsing() {
        assert!("rsud-doris".parse::<OpdCode>().is_ok());
        assert!("Dinkes".parse::<OpdCode>().is_err());
        assert!("1abc".parse::<OpdCode>().is_err());
        assert!("".parse::<OpdCode>().is_err());
    }
}
