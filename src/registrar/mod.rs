//! The registrar (RFC 3261 §10.3): authenticates REGISTER with digest, then adds, refreshes,
//! removes or lists the contact bindings of the extension in the location service.
//!
//! Sans-IO: [`Registrar::handle_register`] takes a parsed request, where it came from and the
//! time, and returns the status and header lines to answer with; binding changes queue in the
//! [`Location`] for the store. No sockets, no clock, no database.

pub mod accounts;
pub mod authn;
pub mod location;

use crate::sip::headers::{Contact, Uri};
use crate::sip::message::{HeaderName, Message};
use crate::types::Extension;

pub use crate::types::Now;
pub use accounts::{Account, Accounts};
pub use authn::{Authenticator, Verdict};
pub use location::{Binding, Change, Location};

use std::net::SocketAddr;

use crate::types::Transport;

/// Expiry limits (seconds).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// Bindings kept per extension; a new one beyond this replaces the one expiring soonest.
    pub max_contacts: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub conn: Option<u64>,
}

/// The answer to a REGISTER: status and extra header lines (no line ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<String>,
    /// Credentials were tried and failed (wrong password or unknown extension), for the guard.
    pub auth_failed: bool,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            auth_failed: false,
        }
    }
}

pub struct Registrar {
    pub authn: Authenticator,
    accounts: Accounts,
    pub location: Location,
    settings: Settings,
}

impl Registrar {
    pub fn new(authn: Authenticator, settings: Settings) -> Registrar {
        Registrar {
            authn,
            accounts: Accounts::default(),
            location: Location::new(),
            settings,
        }
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Replaces the directory of extensions; bindings of extensions that are gone or disabled
    /// are dropped.
    pub fn handle_accounts(&mut self, accounts: Accounts) {
        for ext in self.location.extensions() {
            if !accounts.is_active(&ext) {
                self.location.remove_all(&ext);
            }
        }
        self.accounts = accounts;
    }

    /// Checks the credentials of any request (Proxy-Authorization for the proxy).
    pub fn authenticate(&mut self, req: &Message, header: HeaderName, now_unix: u64) -> Verdict {
        self.authn.check(req, header, &self.accounts, now_unix)
    }

    /// A feature code changed an extension's forwarding or DND: apply it to the directory now
    /// (the store is written by the runtime; its next reload carries the same values).
    pub fn update_features(
        &mut self,
        ext: &Extension,
        action: &crate::dialplan::route::FeatureAction,
    ) {
        use crate::dialplan::route::FeatureAction;
        if let Some(a) = self.accounts.get_mut(ext) {
            match action {
                FeatureAction::SetForwardAlways(t) => a.features.forward_always = Some(t.clone()),
                FeatureAction::ClearForward => {
                    a.features.forward_always = None;
                    a.features.forward_busy = None;
                    a.features.forward_no_answer = None;
                }
                FeatureAction::DndOn => a.features.dnd = true,
                FeatureAction::DndOff => a.features.dnd = false,
            }
        }
    }

    /// Answers a REGISTER.
    pub fn handle_register(&mut self, req: &Message, src: Source, now: Now) -> Reply {
        // The AOR must be a SIP URI (RFC 3261 §10.3 step 3); its user is the extension.
        let to = match req.to() {
            Ok(t) => t,
            Err(_) => return Reply::status(400),
        };
        let aor_user = match Uri::parse(to.uri) {
            Ok(Uri::Sip(u)) => u.user.map(str::to_string),
            _ => return Reply::status(400),
        };
        let ext = match self
            .authn
            .check(req, HeaderName::Authorization, &self.accounts, now.unix)
        {
            Verdict::Authenticated(ext) => ext,
            Verdict::Challenge { stale, failed } => {
                return Reply {
                    status: 401,
                    headers: self.authn.challenge(req, false, stale, now.unix),
                    auth_failed: failed,
                }
            }
        };
        if aor_user.as_deref() != Some(ext.as_str()) {
            // Valid credentials, but for another extension's AOR.
            return Reply::status(403);
        }
        let contacts = match req.contacts() {
            Ok(c) => c,
            Err(_) => return Reply::status(400),
        };
        let header_expires = match req.expires() {
            Ok(e) => e,
            Err(_) => return Reply::status(400),
        };
        let (call_id, cseq) = match (req.call_id(), req.cseq()) {
            (Ok(c), Ok(s)) => (c.to_string(), s.seq),
            _ => return Reply::status(400),
        };

        if contacts.iter().any(|c| matches!(c, Contact::Star)) {
            if contacts.len() != 1 || header_expires != Some(0) {
                return Reply::status(400);
            }
            self.location.remove_all(&ext);
            return self.ok(&ext, now);
        }

        // Validate all contacts before changing anything.
        let mut updates = Vec::with_capacity(contacts.len());
        for c in &contacts {
            let Some(addr) = c.addr() else { continue };
            if !matches!(Uri::parse(addr.uri), Ok(Uri::Sip(_))) {
                return Reply::status(400);
            }
            let expires = c
                .expires()
                .or(header_expires)
                .unwrap_or(self.settings.default_expires);
            if expires != 0 && expires < self.settings.min_expires {
                return Reply {
                    status: 423,
                    headers: vec![format!("Min-Expires: {}", self.settings.min_expires)],
                    auth_failed: false,
                };
            }
            updates.push((*c, expires.min(self.settings.max_expires)));
        }

        let user_agent = req.header(HeaderName::UserAgent).unwrap_or("").to_string();
        for (c, expires) in updates {
            let Some(addr) = c.addr() else { continue };
            let instance = c.instance().map(str::to_string);
            let reg_id = c.reg_id();
            let key = match (&instance, reg_id) {
                (Some(i), Some(r)) => format!("{i};reg-id={r}"),
                (Some(i), None) => i.clone(),
                _ => addr.uri.to_string(),
            };
            if let Some(old) = self.location.bindings(&ext).iter().find(|b| b.key == key) {
                // RFC 3261 §10.3 step 7: an older or repeated CSeq of the same Call-ID is
                // out of order.
                if old.call_id == call_id && cseq <= old.cseq {
                    return Reply::status(500);
                }
            }
            if expires == 0 {
                self.location.remove(&ext, &key);
                continue;
            }
            let params: String = addr
                .params
                .iter()
                .map_while(Result::ok)
                .filter(|(n, _)| !n.eq_ignore_ascii_case("expires"))
                .map(|(n, v)| match v {
                    Some(v) => format!(";{n}={v}"),
                    None => format!(";{n}"),
                })
                .collect();
            let existing = self.location.bindings(&ext);
            if existing.len() >= self.settings.max_contacts
                && !existing.iter().any(|b| b.key == key)
            {
                if let Some(soonest) = existing.iter().min_by_key(|b| b.expires_at) {
                    let k = soonest.key.clone();
                    self.location.remove(&ext, &k);
                }
            }
            let binding = Binding {
                key,
                uri: addr.uri.to_string(),
                params,
                instance,
                reg_id,
                source: src.addr,
                transport: src.transport,
                conn: src.conn,
                user_agent: user_agent.clone(),
                call_id: call_id.clone(),
                cseq,
                expires_at: now.instant + std::time::Duration::from_secs(expires as u64),
                expires_unix: now.unix as i64 + expires as i64,
            };
            self.location.upsert(&ext, binding, true);
        }
        self.ok(&ext, now)
    }

    /// 200 listing every current binding with its expiry.
    fn ok(&self, ext: &Extension, now: Now) -> Reply {
        Reply {
            status: 200,
            headers: self
                .location
                .bindings(ext)
                .iter()
                .map(|b| format!("Contact: {}", b.contact_value(now.instant)))
                .collect(),
            auth_failed: false,
        }
    }
}

/// One line per failed authentication, for fail2ban-style tools (`docs/operations.md` has
/// the filter): `auth failure from <ip> for extension '<user>' method=<METHOD>`. The user
/// comes from the network, so it is cut and stripped of quotes and control characters: a
/// forged name cannot fake a second line or another address.
pub(crate) fn log_auth_failure(source: std::net::IpAddr, method: &str, user: Option<&str>) {
    let user: String = user
        .unwrap_or("")
        .chars()
        .take(64)
        .map(|c| {
            if c.is_control() || c == '\'' || c == '"' {
                '?'
            } else {
                c
            }
        })
        .collect();
    tracing::warn!(
        target: "tambun::auth",
        "auth failure from {} for extension '{}' method={}",
        source,
        user,
        method
    );
}

#[cfg(test)]
mod tests;
