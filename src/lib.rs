//! Tambun: an intranet SIP switch (registrar, stateful proxy, RTP relay) in one binary.
//!
//! The crate is split into sans-IO protocol cores and one async driver:
//! - [`sip`]: the SIP message layer (zero-copy parser, typed views, splicing edits), digest
//!   authentication and the RFC 3261 §17 transaction layer. No I/O, no clock.
//! - [`registrar`]: the REGISTER state machine and the location service. No I/O, no clock.
//! - [`dialplan`]: the per-OPD dialplan files (TOML), their model and validation.
//! - [`guard`]: per-source rate limits, failed-auth bans, scanner filter, overload rule.
//! - [`media`]: the RTP relay: port pool, latching table, forwarding threads (epoll, recvmmsg).
//! - [`store`]: SQLite persistence (extensions, OPDs, registrations), versioned migrations.
//! - [`runtime`]: the only async code: sockets, timers, the driver loop and the admin API.
//! - [`cli`]: the operator commands behind `tambun …`.
//!
//! `docs/architecture.md` walks a REGISTER through these modules.

pub mod cdr;
pub mod cli;
pub mod config;
pub mod dialplan;
pub mod directory;
pub mod guard;
pub mod media;
pub mod metrics;
pub mod network;
pub mod proxy;
pub mod registrar;
pub mod runtime;
pub mod sip;
pub mod store;
pub mod switch;
#[cfg(test)]
pub(crate) mod testing;
pub mod trunk;
pub mod types;
