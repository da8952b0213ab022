//! The sans-IO rig for unit tests at the level of the [`Switch`]: phones are byte strings fed
//! to it on simulated time and what it sends is drained from it. No sockets, no clock, no
//! threads; everything here exists only under `cfg(test)`.
//!
//! It owns what those tests have in common:
//! - the accounts ([`account`]: the password of an extension is `pw` and the extension) and the
//!   registrar they live in ([`registrar`]: realm [`REALM`], a fixed nonce key);
//! - the time ([`monday_morning`], [`step`]): a Monday 10:00 WIB, office hours in the shipped
//!   dialplan;
//! - a phone's side of digest authentication ([`nonce_of`], [`nonce_in`], [`Digest`]);
//! - the [`Rig`]: a switch built by [`RigBuilder`] (the parts that differ between test modules:
//!   more accounts, the switch's address, the guard), a datagram sent from a port or address,
//!   the transmits parsed back, the durable writes taken by kind, the clock advanced.
//!
//! A scenario that only one module plays (a REGISTER exchange, an INVITE with its challenge)
//! stays with that module's tests, in an `impl Rig` block there.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::dialplan::Dialplan;
use crate::guard::Guard;
use crate::guard::Settings as GuardSettings;
use crate::registrar::{Account, Accounts, Authenticator, Now, Registrar, Settings};
use crate::sip::auth::{ha1_hex, Algorithm, NonceKey};
use crate::sip::message::{HeaderName, Limits, Message};
use crate::sip::transaction::{Peer, Transmit};
use crate::switch::{Collected, Durable, Switch};
use crate::types::Transport;

/// The digest realm of every test registrar.
pub(crate) const REALM: &str = "tambun";

/// The address of the switch's UDP socket unless the builder says otherwise.
pub(crate) const SWITCH: &str = "127.0.0.1:5060";

// ---- accounts and the registrar -----------------------------------------------------------------

/// The password of `ext` in every test account.
pub(crate) fn password(ext: &str) -> String {
    format!("pw{ext}")
}

/// An enabled account for `ext` in `opd` with both HA1s of [`password`], no features.
pub(crate) fn account(ext: &str, opd: &str) -> Account {
    Account {
        extension: ext.parse().unwrap(),
        opd: opd.parse().unwrap(),
        name: String::new(),
        ha1_md5: ha1_hex(Algorithm::Md5, ext, REALM, &password(ext)),
        ha1_sha256: ha1_hex(Algorithm::Sha256, ext, REALM, &password(ext)),
        enabled: true,
        features: Default::default(),
    }
}

/// A registrar with these accounts: realm [`REALM`], a fixed nonce key, nonces good for 300 s.
pub(crate) fn registrar(accounts: Vec<Account>) -> Registrar {
    let authn = Authenticator::new(REALM.into(), NonceKey::new([3; 32]), 300);
    let mut reg = Registrar::new(authn, Settings::default());
    reg.handle_accounts(Accounts::new(accounts));
    reg
}

// ---- time ---------------------------------------------------------------------------------------

/// A Monday 10:00 WIB: office hours.
pub(crate) fn monday_morning() -> Now {
    Now {
        instant: Instant::now(),
        unix: 1_764_561_600,
        unix_ms: 1_764_561_600_000,
    }
}

/// Moves `now` on by `secs`, the instant and the wall clock together.
pub(crate) fn step(now: &mut Now, secs: u64) {
    now.instant += Duration::from_secs(secs);
    now.unix += secs;
    now.unix_ms += secs * 1000;
}

// ---- digest, as a phone does it -----------------------------------------------------------------

/// The `nonce` parameter of a challenge value.
pub(crate) fn nonce_in(challenge: &str) -> String {
    let s = challenge.find("nonce=\"").unwrap() + 7;
    challenge[s..s + challenge[s..].find('"').unwrap()].to_string()
}

/// The nonce of the challenge `m` carries in header `h`.
pub(crate) fn nonce_of(m: &Message, h: HeaderName) -> String {
    nonce_in(m.header(h).unwrap())
}

/// A phone's answer to a challenge (`qop=auth`, cnonce `c`): by default with the account's
/// [`password`], nonce count 1 and MD5.
pub(crate) struct Digest<'a> {
    user: &'a str,
    password: String,
    method: &'a str,
    uri: &'a str,
    nonce: &'a str,
    nc: u32,
    algorithm: Algorithm,
}

impl<'a> Digest<'a> {
    pub(crate) fn new(user: &'a str, method: &'a str, uri: &'a str, nonce: &'a str) -> Self {
        Digest {
            user,
            password: password(user),
            method,
            uri,
            nonce,
            nc: 1,
            algorithm: Algorithm::Md5,
        }
    }

    pub(crate) fn password(mut self, password: &str) -> Self {
        self.password = password.to_string();
        self
    }

    pub(crate) fn nc(mut self, nc: u32) -> Self {
        self.nc = nc;
        self
    }

    pub(crate) fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The `Authorization:` line, with its CRLF.
    pub(crate) fn authorization(&self) -> String {
        self.line("Authorization")
    }

    /// The `Proxy-Authorization:` line, with its CRLF.
    pub(crate) fn proxy_authorization(&self) -> String {
        self.line("Proxy-Authorization")
    }

    /// The line of `header` (`Authorization` or `Proxy-Authorization`), with its CRLF.
    pub(crate) fn line(&self, header: &str) -> String {
        let Digest {
            user,
            method,
            uri,
            nonce,
            nc,
            algorithm: alg,
            ..
        } = self;
        let ha1 = ha1_hex(*alg, user, REALM, &self.password);
        let ha2 = alg.hash_hex(format!("{method}:{uri}").as_bytes());
        let resp = alg.hash_hex(format!("{ha1}:{nonce}:{nc:08x}:c:auth:{ha2}").as_bytes());
        format!(
            "{header}: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
uri=\"{uri}\", response=\"{resp}\", algorithm={}, qop=auth, nc={nc:08x}, cnonce=\"c\"\r\n",
            alg.token()
        )
    }
}

// ---- the switch ---------------------------------------------------------------------------------

/// `127.0.0.1:port`, where the test phones are.
pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A datagram the switch sent, parsed.
pub(crate) fn parse(bytes: &Bytes) -> Message {
    Message::parse_datagram(bytes.clone(), &Limits::default()).unwrap()
}

/// What differs between the rigs of the test modules. Without changes: the phones 1000
/// (setda), 1200 (setwan), 2300 and 2301 (dinkes), the shipped dialplan, one UDP socket at
/// [`SWITCH`], the guard disabled.
pub(crate) struct RigBuilder {
    accounts: Vec<Account>,
    socket: SocketAddr,
    guard: Option<GuardSettings>,
}

impl RigBuilder {
    /// More accounts, after the default ones (an extension given again replaces its account).
    pub(crate) fn accounts(mut self, accounts: &[Account]) -> Self {
        self.accounts.extend_from_slice(accounts);
        self
    }

    /// The address of the switch's UDP socket (what it advertises and answers for).
    pub(crate) fn socket(mut self, socket: &str) -> Self {
        self.socket = socket.parse().unwrap();
        self
    }

    /// A guard with this configuration.
    pub(crate) fn guard(mut self, config: GuardSettings) -> Self {
        self.guard = Some(config);
        self
    }

    pub(crate) fn build(self) -> Rig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplan");
        let mut plan = Dialplan::load_dir(&dir).unwrap();
        // The carriers are not pinged here: the proxy's tests count every datagram out (the
        // trunk's own tests turn pings on).
        plan.set_trunk_pings(0);
        let mut sw = Switch::new(
            Limits::default(),
            registrar(self.accounts),
            Arc::new(plan),
            Duration::from_secs(3600),
        );
        sw.add_udp_socket(self.socket);
        if let Some(config) = &self.guard {
            sw.set_guard(Guard::new(config).unwrap());
        }
        Rig {
            sw,
            now: monday_morning(),
            seq: 0,
            outputs: Collected::default(),
        }
    }
}

/// A [`Switch`] on simulated time with what it has put out so far.
pub(crate) struct Rig {
    pub sw: Switch,
    pub now: Now,
    seq: u32,
    /// What the switch put out and no test has taken yet.
    pub outputs: Collected,
}

impl Rig {
    pub(crate) fn builder() -> RigBuilder {
        RigBuilder {
            accounts: vec![
                account("1000", "setda"),
                account("1200", "setwan"),
                account("2300", "dinkes"),
                account("2301", "dinkes"),
            ],
            socket: SWITCH.parse().unwrap(),
            guard: None,
        }
    }

    /// The default rig with `extra` accounts.
    pub(crate) fn new(extra: &[Account]) -> Rig {
        Rig::builder().accounts(extra).build()
    }

    /// A number not handed out before, for branches, tags and Call-IDs.
    pub(crate) fn next(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// A fresh Via branch.
    pub(crate) fn branch(&mut self) -> String {
        format!("z9hG4bKt{}", self.next())
    }

    /// A datagram from the phone at `127.0.0.1:from_port`.
    pub(crate) fn send(&mut self, from_port: u16, text: String) {
        self.send_from(loopback(from_port), text);
    }

    /// A datagram from `from`, on the switch's first UDP socket.
    pub(crate) fn send_from(&mut self, from: SocketAddr, text: String) {
        let peer = Peer {
            addr: from,
            transport: Transport::Udp,
            conn: Some(0),
        };
        self.sw.handle_datagram(Bytes::from(text), peer, self.now);
    }

    /// Sends `text` from `from` and returns everything the switch sent since the last look
    /// (the answers), whatever its destination.
    pub(crate) fn answers_to(&mut self, from: &str, text: &str) -> Vec<Message> {
        self.send_from(from.parse().unwrap(), text.to_owned());
        self.out().into_iter().map(|(_, m)| m).collect()
    }

    /// Every transmit since the last look, in order.
    pub(crate) fn transmits(&mut self) -> Vec<Transmit> {
        self.outputs.pump(&mut self.sw);
        self.outputs.transmits.drain(..).collect()
    }

    /// Every transmit since the last look, as (destination port, message).
    pub(crate) fn out(&mut self) -> Vec<(u16, Message)> {
        self.transmits()
            .into_iter()
            .map(|Transmit { peer, bytes }| (peer.addr.port(), parse(&bytes)))
            .collect()
    }

    /// The call records written since the last look.
    pub(crate) fn records(&mut self) -> Vec<crate::cdr::CdrRecord> {
        self.take(|d| match d {
            Durable::CallRecord(r) => Some(r.clone()),
            _ => None,
        })
    }

    /// The feature changes written since the last look.
    pub(crate) fn effects(&mut self) -> Vec<crate::proxy::Effect> {
        self.take(|d| match d {
            Durable::Effect(e) => Some(e.clone()),
            _ => None,
        })
    }

    /// The bans written since the last look.
    pub(crate) fn bans(&mut self) -> Vec<crate::guard::Ban> {
        self.take(|d| match d {
            Durable::Ban(b) => Some(b.clone()),
            _ => None,
        })
    }

    fn take<T>(&mut self, pick: impl Fn(&Durable) -> Option<T>) -> Vec<T> {
        self.outputs.pump(&mut self.sw);
        self.outputs.take(pick)
    }

    /// Moves the clock on by `secs` and lets the switch's timers fire.
    pub(crate) fn advance(&mut self, secs: u64) {
        step(&mut self.now, secs);
        self.sw.handle_timeout(self.now);
    }
}
