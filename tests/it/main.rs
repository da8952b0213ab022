//! Tambun's integration and interop tests, as one test binary (one link instead of one per
//! file). Each module is one former `tests/*.rs` file; run one with
//! `cargo test --test it calls_sipp::`, one test with its full path
//! (`cargo test --test it calls_sipp::answered_call_with_bye`).
//!
//! - [`common`]: the harness. It starts the real `tambun` binary on loopback (each test its own
//!   temp dir, DB and free ports), SIPp and baresip, and holds the in-process SIP clients.
//! - Library-level tests with no switch process: the relay engine (`relay_*`), the SIP torture
//!   messages (`torture`), and the proptests (`dialplan_props`, `parser_props`). A proptest
//!   keeps its regressions in `<module>.proptest-regressions` beside its file
//!   ([`common::proptest_config`]).
//! - CLI tests: `cli`, `cli_calls`.
//! - Tests of a running switch: everything else. Many also start SIPp; `baresip`, `*_baresip`,
//!   `dialog_integrity` and `tls_call` start baresip, and `guard` runs sipvicious; `browser`
//!   drives headless Chromium on the softphone page through `tests/browser/agent.mjs`
//!   (needs node, Debian's chromium and `web/node_modules`) against baresip; `console` drives
//!   the operator console through `tests/browser/console.mjs` the same way.
//!
//! Every test runs on a thread of this one process, in parallel with tests of other modules.
//! So no test may change process-wide state: the environment, the current directory or
//! signal handlers. Child processes get their settings through `Command`. Every port is
//! picked free at run time, except the relay engine tests' fixed ranges, which lie below the
//! kernel's ephemeral range and below the switches' relay ranges (see `relay_ports`).

mod common;

mod baresip;
mod browser;
mod calls_baresip;
mod calls_budget;
mod calls_permissions;
mod calls_reload;
mod calls_sipp;
mod calls_toll;
mod calls_trace;
mod calls_transcode;
mod cli;
mod cli_calls;
mod conference_baresip;
mod console;
mod crash_safety;
mod dialog_integrity;
mod dialplan_props;
mod durable_before_ack;
mod garbage;
mod guard;
mod ipv6;
mod live_changes;
mod media_baresip;
mod media_hold;
mod media_latching;
mod media_ports;
mod media_timeout;
mod metrics;
mod parser_props;
mod register_auth;
mod register_sipp;
mod relay_conference;
mod relay_forwarding;
mod relay_inactivity;
mod relay_latching;
mod relay_ports;
mod relay_table_props;
mod restart;
mod tls_call;
mod tls_certificate;
mod tls_connections;
mod torture;
mod trunk;
mod websocket;
