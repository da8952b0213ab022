//! `tambun serve`: builds the configuration (defaults, then `--config FILE`, then flags), sets
//! up logging and runs the switch in a multi-threaded tokio runtime.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tracing_subscriber::EnvFilter;

use super::GlobalArgs;
use crate::config::{Config, ConfigOverrides};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML configuration file (unknown keys are an error)
    #[arg(long, value_name = "FILE", env = "TAMBUN_CONFIG")]
    config: Option<PathBuf>,
    /// Listen on this address, UDP and TCP (repeatable) [default: 0.0.0.0:5060]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// The SIP domain the switch answers for
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
    /// Relay ports for media, FIRST-LAST [default: 10000-20000]
    #[arg(long, value_name = "FIRST-LAST")]
    rtp_ports: Option<String>,
    /// The address written into SDP for the relay (multi-homed hosts, NAT)
    #[arg(long, value_name = "IP")]
    media_advertise: Option<std::net::IpAddr>,
    /// Do not anchor media: SDP passes untouched and phones send RTP to each other
    #[arg(long)]
    no_media: bool,
    /// Listen for SIP over TLS on this address (repeatable) [default: each listen IP, port 5061]
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "no_tls")]
    tls_listen: Vec<SocketAddr>,
    /// Do not listen for SIP over TLS
    #[arg(long)]
    no_tls: bool,
    /// Serve the softphone page (/phone) and SIP over WSS (/ws) over HTTPS on this address
    /// [default: the first listen IP, port 8443]
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "no_web")]
    web_listen: Option<SocketAddr>,
    /// Do not start the web listener (softphone page and WSS)
    #[arg(long)]
    no_web: bool,
    /// Listen for SIP over plain WebSocket (ws://) on this address: loopback, or behind a
    /// TLS-terminating proxy [default: off]
    #[arg(long, value_name = "ADDR:PORT")]
    ws_listen: Option<SocketAddr>,
}

pub(super) fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::from_file_or_default(args.config.as_deref())?;
    config.apply(ConfigOverrides {
        listen: args.listen,
        db: global.db.clone(),
        dialplan: global.dialplan.clone(),
        admin: global.admin,
        domain: args.domain,
        rtp_ports: args.rtp_ports,
        media_advertise: args.media_advertise,
        no_media: args.no_media,
        tls_listen: args.tls_listen,
        no_tls: args.no_tls,
        web_listen: args.web_listen,
        no_web: args.no_web,
        ws_listen: args.ws_listen,
    })?;

    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => EnvFilter::try_new(&config.log)
            .with_context(|| format!("config: invalid log filter '{}'", config.log))?,
    };
    // Fails only if a subscriber is already set (e.g. in tests); then that one is used.
    // Colour only on a terminal: journald, log files and the fail2ban filter read plain text.
    let colour = use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tambun")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(crate::runtime::serve(config))
}

/// Whether log lines get ANSI colours: only when they go to a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>).
fn use_colour(to_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    to_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::use_colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new(""))));
    }
}
