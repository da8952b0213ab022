//! The configuration of `tambun serve`: embedded defaults, an optional TOML file (unknown keys
//! are an error) and command-line overrides, applied in that order. Pure data and parsing; it
//! does not open sockets or the database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `tambun serve` needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses the switch listens on, UDP and TCP on each.
    pub listen: Vec<SocketAddr>,
    /// The SQLite database (extensions, OPDs, registrations).
    pub db: PathBuf,
    /// The directory of dialplan files (`<opd>.toml`).
    pub dialplan: PathBuf,
    /// The admin HTTP API (registrations, metrics); keep it on loopback.
    pub admin: SocketAddr,
    /// The SIP domain the switch answers for (its own host name); `None` accepts any.
    pub domain: Option<String>,
    /// Registration expiry and digest nonce limits.
    pub registrar: RegistrarConfig,
    /// Call limits.
    pub calls: CallsConfig,
    /// Toll-fraud limits on trunk calls.
    pub toll: TollConfig,
    /// The RTP relay that anchors every call's media.
    pub media: MediaConfig,
    /// SIP over TLS (RFC 3261 §26.2, RFC 5630).
    pub tls: TlsConfig,
    /// The web listener: HTTPS for the softphone page and SIP over WSS.
    pub web: WebConfig,
    /// The plain SIP-over-WebSocket listener.
    pub websocket: WebSocketConfig,
    /// Limits on TCP and TLS connections.
    pub connections: ConnectionsConfig,
    /// Flood, brute-force and scanner defence, and the overload rule.
    pub guard: crate::guard::Settings,
    /// The largest SIP message accepted, in bytes (a datagram or one framed TCP message).
    pub max_message_bytes: usize,
    /// The most header lines accepted in one SIP message.
    pub max_headers: usize,
    /// The `tracing` filter (e.g. `info`, `tambun=debug`); `RUST_LOG` overrides it.
    pub log: String,
}

/// The `[registrar]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Shorter requested expiries are answered 423 with `Min-Expires`.
    pub min_expires: u32,
    /// Longer requested expiries are lowered to this.
    pub max_expires: u32,
    /// The expiry of a binding that asks for none.
    pub default_expires: u32,
    /// How long a digest nonce stays valid before `stale=true`.
    pub nonce_lifetime_secs: u32,
    /// Digest algorithms offered in each challenge, in order (`MD5`, `SHA-256`). MD5 first:
    /// many phones use only the first challenge and know only MD5.
    pub digest_algorithms: Vec<String>,
    /// User-Agent substrings (case-insensitive) of clients that fail on any challenge that
    /// is not MD5 (baresip 1.0's libre answers ENOSYS): they are challenged with MD5 alone.
    pub md5_only_user_agents: Vec<String>,
}

/// The `[media]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Anchor media in the relay (false: SDP passes untouched and phones talk directly).
    pub enabled: bool,
    /// Relay ports, `FIRST-LAST` inclusive (RTP even, RTCP odd).
    pub rtp_ports: String,
    /// Address the relay sockets bind to; default: the first listen address's IP.
    pub bind: Option<std::net::IpAddr>,
    /// Address written into SDP; default: the switch's advertised SIP address (set it on
    /// multi-homed hosts or behind NAT).
    pub advertise: Option<std::net::IpAddr>,
    /// Forwarding threads (0: one per core).
    pub threads: usize,
    /// A call without RTP in any direction for this long is ended (BYE both ways).
    pub inactivity_secs: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            enabled: true,
            rtp_ports: "10000-20000".to_owned(),
            bind: None,
            advertise: None,
            threads: 0,
            inactivity_secs: 60,
        }
    }
}

impl MediaConfig {
    /// The port range as numbers.
    pub fn port_range(&self) -> Result<(u16, u16), ConfigError> {
        let bad = || {
            ConfigError::Invalid(format!(
                "media.rtp_ports '{}' is not FIRST-LAST (e.g. 10000-20000, at least 4 ports, above 1023)",
                self.rtp_ports
            ))
        };
        let (a, b) = self.rtp_ports.split_once('-').ok_or_else(bad)?;
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        if a < 1024 || b < a || b - a < 3 {
            return Err(bad());
        }
        Ok((a, b))
    }
}

/// The `[toll]` table: limits on calls to the trunk (emergency calls are never limited).
/// `0` means no limit. `[toll.opd.CODE]` replaces any of the four for one OPD's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TollConfig {
    /// Trunk calls one extension may have in progress at once.
    pub concurrent_per_extension: u32,
    /// Trunk calls one OPD's extensions may have in progress at once, together.
    pub concurrent_per_opd: u32,
    /// Trunk calls one extension may start within any 60 minutes.
    pub calls_per_hour_per_extension: u32,
    /// Trunk calls one OPD's extensions may start within any 60 minutes, together.
    pub calls_per_hour_per_opd: u32,
    /// Per-OPD replacements, by OPD code.
    pub opd: std::collections::BTreeMap<String, TollOpdConfig>,
}

/// A `[toll.opd.CODE]` table: the limits it names replace the `[toll]` ones for that OPD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TollOpdConfig {
    pub concurrent_per_extension: Option<u32>,
    pub concurrent_per_opd: Option<u32>,
    pub calls_per_hour_per_extension: Option<u32>,
    pub calls_per_hour_per_opd: Option<u32>,
}

impl Default for TollConfig {
    fn default() -> Self {
        let d = crate::proxy::toll::Limits::default();
        TollConfig {
            concurrent_per_extension: d.concurrent_per_extension,
            concurrent_per_opd: d.concurrent_per_opd,
            calls_per_hour_per_extension: d.per_hour_per_extension,
            calls_per_hour_per_opd: d.per_hour_per_opd,
            opd: Default::default(),
        }
    }
}

impl TollConfig {
    /// The limits for the toll guard, per-OPD replacements merged with the defaults.
    pub fn limits(&self) -> Result<crate::proxy::toll::TollLimits, ConfigError> {
        use crate::proxy::toll::Limits;
        let default = Limits {
            concurrent_per_extension: self.concurrent_per_extension,
            concurrent_per_opd: self.concurrent_per_opd,
            per_hour_per_extension: self.calls_per_hour_per_extension,
            per_hour_per_opd: self.calls_per_hour_per_opd,
        };
        let mut opd = std::collections::BTreeMap::new();
        for (code, o) in &self.opd {
            let code = code.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "toll.opd.{code}: '{code}' is not an OPD code (lowercase letters, digits and -)"
                ))
            })?;
            let limits = Limits {
                concurrent_per_extension: o
                    .concurrent_per_extension
                    .unwrap_or(default.concurrent_per_extension),
                concurrent_per_opd: o.concurrent_per_opd.unwrap_or(default.concurrent_per_opd),
                per_hour_per_extension: o
                    .calls_per_hour_per_extension
                    .unwrap_or(default.per_hour_per_extension),
                per_hour_per_opd: o.calls_per_hour_per_opd.unwrap_or(default.per_hour_per_opd),
            };
            opd.insert(code, limits);
        }
        Ok(crate::proxy::toll::TollLimits { default, opd })
    }
}

/// The `[tls]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Listen for SIP over TLS.
    pub enabled: bool,
    /// The TLS port used on each listen address's IP (when `listen` is empty).
    pub port: u16,
    /// Explicit TLS listen addresses; empty: every `listen` IP on `port`.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain; with `key`. Neither: a self-signed certificate is generated on
    /// first start and kept next to the database (`<db>.tls.crt`, `<db>.tls.key`).
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// A TLS connection that has not finished its handshake after this long is closed.
    pub handshake_timeout_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: true,
            port: 5061,
            listen: Vec::new(),
            cert: None,
            key: None,
            handshake_timeout_secs: 10,
        }
    }
}

impl TlsConfig {
    /// Where the TLS listeners go, given the UDP/TCP listen addresses.
    pub fn listen_addrs(&self, listen: &[SocketAddr]) -> Vec<SocketAddr> {
        if !self.enabled {
            return Vec::new();
        }
        if !self.listen.is_empty() {
            return self.listen.clone();
        }
        let mut out: Vec<SocketAddr> = Vec::new();
        for a in listen {
            let t = SocketAddr::new(a.ip(), self.port);
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }
}

/// The `[web]` table: the HTTPS listener on the intranet address that serves the softphone
/// page (`/phone`), its API and SIP over secure WebSocket (`/ws`), with the certificate of
/// `[tls]`. The admin API stays on its own loopback listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub enabled: bool,
    /// The port used on the first listen address's IP when `listen` is not set.
    pub port: u16,
    /// The address to listen on; default: the first `listen` IP on `port`.
    pub listen: Option<SocketAddr>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            port: 8443,
            listen: None,
        }
    }
}

impl WebConfig {
    /// Where the web listener goes, given the SIP listen addresses (`None`: disabled).
    pub fn listen_addr(&self, listen: &[SocketAddr]) -> Option<SocketAddr> {
        if !self.enabled {
            return None;
        }
        self.listen
            .or_else(|| listen.first().map(|a| SocketAddr::new(a.ip(), self.port)))
    }
}

/// The `[websocket]` table: plain SIP over WebSocket (RFC 7118, `ws://`), for loopback and
/// for a TLS-terminating proxy in front of the switch. Off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    pub listen: Option<SocketAddr>,
}

/// The `[connections]` table: TCP and TLS together.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Open connections allowed from one source IP; more are closed at accept.
    pub max_per_source: u32,
    /// Open connections allowed in total; more are closed at accept.
    pub max_total: u32,
    /// A connection that has not sent one complete SIP message this long after it opened
    /// (after the TLS handshake) is closed.
    pub first_message_secs: u64,
    /// A connection that received no bytes (messages or CRLF keep-alives) for this long is
    /// closed. Default: `registrar.max_expires` + 60, so a registered phone that only
    /// re-registers keeps its connection.
    pub idle_secs: Option<u64>,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max_per_source: 32,
            max_total: 4096,
            first_message_secs: 30,
            idle_secs: None,
        }
    }
}

/// The `[calls]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// An answered call whose phones send no BYE (and no session-timer refresh, RFC 4028) is
    /// ended in the call records as `expired` after this many seconds.
    pub max_duration_secs: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            max_duration_secs: 4 * 3600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 5060))],
            db: PathBuf::from("tambun.db"),
            dialplan: PathBuf::from("dialplan"),
            admin: SocketAddr::from(([127, 0, 0, 1], 8060)),
            domain: None,
            registrar: RegistrarConfig::default(),
            calls: CallsConfig::default(),
            toll: TollConfig::default(),
            media: MediaConfig::default(),
            tls: TlsConfig::default(),
            web: WebConfig::default(),
            websocket: WebSocketConfig::default(),
            connections: ConnectionsConfig::default(),
            guard: crate::guard::Settings::default(),
            max_message_bytes: 65535,
            max_headers: 128,
            log: "info".to_owned(),
        }
    }
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            nonce_lifetime_secs: 300,
            digest_algorithms: vec!["MD5".to_owned(), "SHA-256".to_owned()],
            md5_only_user_agents: vec![
                "baresip".to_owned(),
                "jssip".to_owned(),
                "sip.js".to_owned(),
            ],
        }
    }
}

/// Values given on the command line; each `Some` (or a non-empty `listen`) replaces the
/// configured value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigOverrides {
    pub listen: Vec<SocketAddr>,
    pub db: Option<PathBuf>,
    pub dialplan: Option<PathBuf>,
    pub admin: Option<SocketAddr>,
    pub domain: Option<String>,
    pub rtp_ports: Option<String>,
    pub media_advertise: Option<std::net::IpAddr>,
    pub no_media: bool,
    /// `--tls-listen`: TLS listen addresses (replace `[tls] listen`).
    pub tls_listen: Vec<SocketAddr>,
    /// `--no-tls`.
    pub no_tls: bool,
    /// `--web-listen`: the web listener's address (replaces `[web] listen`).
    pub web_listen: Option<SocketAddr>,
    /// `--no-web`.
    pub no_web: bool,
    /// `--ws-listen`: the plain WebSocket listener (replaces `[websocket] listen`).
    pub ws_listen: Option<SocketAddr>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// How long a stream connection may stay silent (see [`ConnectionsConfig::idle_secs`]).
    pub fn conn_idle_secs(&self) -> u64 {
        self.connections
            .idle_secs
            .unwrap_or(u64::from(self.registrar.max_expires) + 60)
    }

    /// The configuration of `--config FILE`, or the defaults without one.
    pub fn from_file_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        path.map_or_else(|| Ok(Config::default()), Config::from_file)
    }

    /// Reads a TOML file; keys it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { line, message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                line,
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text (errors carry an empty path; [`Config::from_file`] fills it in).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            ConfigError::Parse {
                path: PathBuf::new(),
                line,
                message: e.message().trim().to_owned(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Applies command-line overrides, then checks the result again.
    pub fn apply(&mut self, overrides: ConfigOverrides) -> Result<(), ConfigError> {
        if !overrides.listen.is_empty() {
            self.listen = overrides.listen;
        }
        if let Some(db) = overrides.db {
            self.db = db;
        }
        if let Some(dialplan) = overrides.dialplan {
            self.dialplan = dialplan;
        }
        if let Some(admin) = overrides.admin {
            self.admin = admin;
        }
        if let Some(domain) = overrides.domain {
            self.domain = Some(domain);
        }
        if let Some(ports) = overrides.rtp_ports {
            self.media.rtp_ports = ports;
        }
        if let Some(ip) = overrides.media_advertise {
            self.media.advertise = Some(ip);
        }
        if overrides.no_media {
            self.media.enabled = false;
        }
        if !overrides.tls_listen.is_empty() {
            self.tls.listen = overrides.tls_listen;
            self.tls.enabled = true;
        }
        if overrides.no_tls {
            self.tls.enabled = false;
        }
        if let Some(addr) = overrides.web_listen {
            self.web.listen = Some(addr);
            self.web.enabled = true;
        }
        if overrides.no_web {
            self.web.enabled = false;
        }
        if let Some(addr) = overrides.ws_listen {
            self.websocket.listen = Some(addr);
        }
        self.validate()
    }

    /// Checks values that parse but make no sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.registrar;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.media.port_range()?;
        if self.media.inactivity_secs == 0 {
            return invalid("media.inactivity_secs must be at least 1".into());
        }
        if self.listen.is_empty() {
            return invalid("`listen` needs at least one address".into());
        }
        if r.min_expires > r.max_expires {
            return invalid(format!(
                "registrar.min_expires ({}) is greater than registrar.max_expires ({})",
                r.min_expires, r.max_expires
            ));
        }
        if !(r.min_expires..=r.max_expires).contains(&r.default_expires) {
            return invalid(format!(
                "registrar.default_expires ({}) must lie between min_expires ({}) and max_expires ({})",
                r.default_expires, r.min_expires, r.max_expires
            ));
        }
        for a in &r.digest_algorithms {
            if !matches!(a.to_ascii_uppercase().as_str(), "MD5" | "SHA-256") {
                return Err(ConfigError::Invalid(format!(
                    "registrar.digest_algorithms: '{a}' is not MD5 or SHA-256"
                )));
            }
        }
        if r.nonce_lifetime_secs == 0 {
            return invalid("registrar.nonce_lifetime_secs must be at least 1".into());
        }
        if self.max_message_bytes < 1024 {
            return invalid(format!(
                "max_message_bytes ({}) is too small; SIP needs at least 1024",
                self.max_message_bytes
            ));
        }
        if self.max_headers < 16 {
            return invalid(format!(
                "max_headers ({}) is too small; use at least 16",
                self.max_headers
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid("tls.cert and tls.key go together: set both or neither".into());
        }
        for t in self.tls.listen_addrs(&self.listen) {
            let clash = self.listen.iter().find(|l| {
                l.port() == t.port()
                    && (l.ip() == t.ip() || l.ip().is_unspecified() || t.ip().is_unspecified())
            });
            if let Some(l) = clash {
                return invalid(format!(
                    "TLS would listen on {t}, which is the SIP TCP port of listen address {l}; \
                     set [tls] port or listen (--tls-listen), or disable TLS (--no-tls)"
                ));
            }
        }
        if self.tls.handshake_timeout_secs == 0 {
            return invalid("tls.handshake_timeout_secs must be at least 1".into());
        }
        let c = &self.connections;
        if c.max_per_source == 0 || c.max_total == 0 {
            return invalid(
                "connections.max_per_source and connections.max_total must be at least 1".into(),
            );
        }
        if c.max_per_source > c.max_total {
            return invalid(format!(
                "connections.max_per_source ({}) is greater than connections.max_total ({})",
                c.max_per_source, c.max_total
            ));
        }
        if c.first_message_secs == 0 || c.idle_secs == Some(0) {
            return invalid(
                "connections.first_message_secs and connections.idle_secs must be at least 1"
                    .into(),
            );
        }
        for a in &self.guard.allow {
            if let Err(e) = a.parse::<crate::guard::Cidr>() {
                return invalid(format!("guard.allow: {e}"));
            }
        }
        let g = &self.guard;
        if g.auth_failures == 0 || g.flood_drops == 0 || g.requests_per_sec == 0 {
            return invalid(
                "guard.auth_failures, guard.flood_drops and guard.requests_per_sec must be at least 1"
                    .into(),
            );
        }
        if g.auth_window_secs == 0 || g.ban_secs == 0 {
            return invalid("guard.auth_window_secs and guard.ban_secs must be at least 1".into());
        }
        if matches!(&self.domain, Some(d) if d.trim().is_empty()) {
            return invalid("`domain` is empty".into());
        }
        self.toll.limits()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen, vec!["0.0.0.0:5060".parse().unwrap()]);
        assert_eq!(c.db, PathBuf::from("tambun.db"));
        assert_eq!(c.dialplan, PathBuf::from("dialplan"));
        assert_eq!(c.admin, "127.0.0.1:8060".parse().unwrap());
        assert_eq!(c.domain, None);
        assert_eq!(c.registrar.min_expires, 60);
        assert_eq!(c.registrar.max_expires, 3600);
        assert_eq!(c.registrar.default_expires, 3600);
        assert_eq!(c.registrar.nonce_lifetime_secs, 300);
        assert_eq!(c.max_message_bytes, 65535);
        assert_eq!(c.max_headers, 128);
        assert_eq!(c.log, "info");
        assert!(c.tls.enabled);
        assert_eq!(c.tls.port, 5061);
        assert_eq!(c.tls.handshake_timeout_secs, 10);
        assert_eq!(c.connections.max_per_source, 32);
        assert_eq!(c.connections.max_total, 4096);
        assert_eq!(c.connections.first_message_secs, 30);
        assert_eq!(c.conn_idle_secs(), 3660);
        assert_eq!(
            c.tls.listen_addrs(&c.listen),
            vec!["0.0.0.0:5061".parse().unwrap()]
        );
    }

    #[test]
    fn tls_and_connection_settings() {
        let mut c = Config::from_toml(
            "listen = [\"127.0.0.1:5070\", \"[::1]:5070\"]\n[tls]\nport = 5071\n\
             [connections]\nidle_secs = 90\n",
        )
        .unwrap();
        assert_eq!(
            c.tls.listen_addrs(&c.listen),
            vec![
                "127.0.0.1:5071".parse().unwrap(),
                "[::1]:5071".parse().unwrap()
            ]
        );
        assert_eq!(c.conn_idle_secs(), 90);
        c.apply(ConfigOverrides {
            no_tls: true,
            ..ConfigOverrides::default()
        })
        .unwrap();
        assert!(c.tls.listen_addrs(&c.listen).is_empty());
        c.apply(ConfigOverrides {
            tls_listen: vec!["127.0.0.1:6000".parse().unwrap()],
            ..ConfigOverrides::default()
        })
        .unwrap();
        assert_eq!(
            c.tls.listen_addrs(&c.listen),
            vec!["127.0.0.1:6000".parse().unwrap()]
        );
        let err = Config::from_toml("[tls]\ncert = \"a.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("tls.cert and tls.key"), "{err}");
        let err =
            Config::from_toml("[connections]\nmax_per_source = 10\nmax_total = 5\n").unwrap_err();
        assert!(err.to_string().contains("max_per_source"), "{err}");
        assert!(Config::from_toml("[tls]\nprot = 1\n").is_err());
        let err = Config::from_toml("listen = [\"127.0.0.1:5061\"]\n").unwrap_err();
        assert!(err.to_string().contains("--no-tls"), "{err}");
        assert!(
            Config::from_toml("listen = [\"127.0.0.1:5061\"]\n[tls]\nenabled = false\n").is_ok()
        );
        assert!(c.guard.enabled);
        assert_eq!(c.guard.auth_failures, 10);
        assert_eq!(c.guard.auth_window_secs, 60);
        assert_eq!(c.guard.ban_secs, 600);
        assert!(c
            .guard
            .scanner_user_agents
            .contains(&"friendly-scanner".to_string()));
    }

    #[test]
    fn guard_table() {
        let c =
            Config::from_toml("[guard]\nallow = [\"10.20.0.0/16\", \"fd00::/8\"]\nban_secs = 60\n")
                .unwrap();
        assert_eq!(c.guard.allow.len(), 2);
        assert_eq!(c.guard.ban_secs, 60);
        let err = Config::from_toml("[guard]\nallow = [\"10.20.0.0/40\"]\n").unwrap_err();
        assert!(err.to_string().contains("guard.allow"), "{err}");
        let err = Config::from_toml("[guard]\nban_minutes = 5\n").unwrap_err();
        assert!(err.to_string().contains("ban_minutes"), "{err}");
        assert!(Config::from_toml("[guard]\nauth_failures = 0\n").is_err());
    }

    #[test]
    fn file_values_replace_defaults() {
        let c = Config::from_toml(
            "listen = [\"127.0.0.1:5070\", \"[::1]:5070\"]\ndomain = \"pbx.kalteng.go.id\"\n\
             [registrar]\nmin_expires = 30\n",
        )
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.domain.as_deref(), Some("pbx.kalteng.go.id"));
        assert_eq!(c.registrar.min_expires, 30);
        assert_eq!(c.registrar.max_expires, 3600);
    }

    #[test]
    fn unknown_key_rejected_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tambun.toml");
        std::fs::write(&path, "db = \"x.db\"\n\n[registrar]\nmin_expire = 30\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("tambun.toml:4:"), "{err}");
        assert!(err.contains("unknown field `min_expire`"), "{err}");

        std::fs::write(&path, "lisen = []\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("tambun.toml:1:") && err.contains("`lisen`"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_named() {
        let err = Config::from_file(Path::new("/nonexistent/t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config: cannot read /nonexistent/t.toml"),
            "{err}"
        );
    }

    #[test]
    fn inconsistent_values_rejected() {
        let err = Config::from_toml("[registrar]\nmin_expires = 4000\n").unwrap_err();
        assert!(err.to_string().contains("min_expires"), "{err}");
        assert!(Config::from_toml("listen = []").is_err());
    }

    #[test]
    fn toll_limits_with_opd_replacements() {
        let c = Config::from_toml("").unwrap();
        let l = c.toll.limits().unwrap();
        assert_eq!(l.default, crate::proxy::toll::Limits::default());
        assert_eq!(l.default.concurrent_per_extension, 2);
        assert_eq!(l.default.concurrent_per_opd, 10);
        assert_eq!(l.default.per_hour_per_extension, 20);
        assert_eq!(l.default.per_hour_per_opd, 200);
        assert!(l.opd.is_empty());
        let c = Config::from_toml(
            "[toll]\nconcurrent_per_extension = 1\ncalls_per_hour_per_opd = 0\n\
             [toll.opd.setda]\nconcurrent_per_opd = 30\n",
        )
        .unwrap();
        let l = c.toll.limits().unwrap();
        assert_eq!(l.default.concurrent_per_extension, 1);
        assert_eq!(l.default.per_hour_per_opd, 0);
        let setda = l.of(Some(&"setda".parse().unwrap()));
        assert_eq!(setda.concurrent_per_opd, 30);
        assert_eq!(setda.concurrent_per_extension, 1, "taken from [toll]");
        assert_eq!(l.of(Some(&"dinkes".parse().unwrap())), l.default);
        let err = Config::from_toml("[toll.opd.Setda]\nconcurrent_per_opd = 3\n").unwrap_err();
        assert!(err.to_string().contains("toll.opd.Setda"), "{err}");
        let err = Config::from_toml("[toll]\nconcurrent = 3\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `concurrent`"),
            "{err}"
        );
    }

    #[test]
    fn overrides() {
        let mut c = Config::from_toml("db = \"file.db\"\ndomain = \"a\"").unwrap();
        c.apply(ConfigOverrides {
            listen: vec!["127.0.0.1:5080".parse().unwrap()],
            db: Some("flag.db".into()),
            dialplan: None,
            admin: Some("127.0.0.1:9000".parse().unwrap()),
            domain: None,
            rtp_ports: Some("30000-30099".into()),
            media_advertise: None,
            no_media: false,
            tls_listen: Vec::new(),
            no_tls: false,
            web_listen: None,
            no_web: false,
            ws_listen: Some("127.0.0.1:8080".parse().unwrap()),
        })
        .unwrap();
        assert_eq!(c.websocket.listen, Some("127.0.0.1:8080".parse().unwrap()));
        // The web listener follows the first listen IP unless given.
        assert_eq!(
            c.web.listen_addr(&c.listen),
            Some("127.0.0.1:8443".parse().unwrap())
        );
        assert_eq!(c.media.port_range().unwrap(), (30000, 30099));
        assert!(Config::from_toml("[media]\nrtp_ports = \"5-3\"").is_err());
        assert_eq!(c.listen, vec!["127.0.0.1:5080".parse().unwrap()]);
        assert_eq!(c.db, PathBuf::from("flag.db"));
        assert_eq!(c.dialplan, PathBuf::from("dialplan"));
        assert_eq!(c.admin, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.domain.as_deref(), Some("a"));
        // No overrides: nothing changes.
        let before = c.clone();
        c.apply(ConfigOverrides::default()).unwrap();
        assert_eq!(c, before);
    }
}
