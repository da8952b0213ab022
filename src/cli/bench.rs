//! `tambun bench …`: load-test helpers. `relay-alloc` is the allocation command of
//! `rtp-relay-bench cmd` (peers harness): it runs the relay engine inside this process and
//! opens one session per `CALL_ID A_PORT B_PORT` line read on stdin.

use std::io::{self, BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::media::blocking::BlockingRelay;
use crate::media::{RelayConfig, Side};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Relay allocation for `rtp-relay-bench cmd`: reads `CALL_ID A_PORT B_PORT` lines, opens a
    /// relay session per line (A's and B's SDP addresses = 127.0.0.1:A_PORT / B_PORT) and
    /// prints `A_DST_IP A_DST_PORT B_DST_IP B_DST_PORT`; on stdin EOF closes them and exits.
    RelayAlloc(RelayAllocArgs),
}

#[derive(Debug, Args)]
pub struct RelayAllocArgs {
    /// Forwarding threads (0: one per core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Relay port range, inclusive
    #[arg(long, default_value = "10000-20000", value_parser = parse_range)]
    pub ports: (u16, u16),
    /// A bare recvmmsg/sendmmsg forwarder (no latching, counters or inactivity): the baseline
    #[arg(long)]
    pub bare: bool,
    /// Datagrams per recvmmsg/sendmmsg
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// SO_BUSY_POLL microseconds on the relay sockets (0: off)
    #[arg(long, default_value_t = 0)]
    pub busy_poll: u32,
    /// Also append the end-of-run summary (with this process's CPU %) to this file
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::RelayAlloc(args) => relay_alloc(args),
    }
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a port range like 10000-20000"))?;
    let lo: u16 = lo.trim().parse().map_err(|_| format!("bad port '{lo}'"))?;
    let hi: u16 = hi.trim().parse().map_err(|_| format!("bad port '{hi}'"))?;
    if lo >= hi {
        return Err(format!("the range {lo}-{hi} is empty"));
    }
    Ok((lo, hi))
}

fn relay_alloc(args: RelayAllocArgs) -> anyhow::Result<()> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut relay = BlockingRelay::start(RelayConfig {
        port_range: args.ports,
        bind: localhost,
        advertise: localhost,
        threads: args.threads,
        batch: args.batch,
        busy_poll_us: args.busy_poll,
        bare: args.bare,
        ..RelayConfig::default()
    })
    .context("cannot start the relay")?;
    // Our own buffer (larger than Stdin's, which it then bypasses) tells when input is waiting.
    let mut input = io::BufReader::with_capacity(1 << 16, io::stdin());
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut sessions = Vec::new();
    let mut line = String::new();
    let mut first_open: Option<(std::time::Instant, f64)> = None;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [_call_id, a_port, b_port] = fields[..] else {
            bail!("expected `CALL_ID A_PORT B_PORT`, got '{}'", line.trim());
        };
        let port = |p: &str| p.parse::<u16>().with_context(|| format!("bad port '{p}'"));
        let (a, b) = (port(a_port)?, port(b_port)?);
        let session = relay.open(sessions.len() as u64, 1, true)?;
        first_open.get_or_insert_with(|| (std::time::Instant::now(), cpu_seconds()));
        relay.set_remote(session.id, 0, Side::A, SocketAddr::new(localhost, a))?;
        relay.set_remote(session.id, 0, Side::B, SocketAddr::new(localhost, b))?;
        let s = session.streams[0];
        writeln!(
            out,
            "{} {} {} {}",
            s.a.rtp.ip(),
            s.a.rtp.port(),
            s.b.rtp.ip(),
            s.b.rtp.port()
        )?;
        sessions.push(session.id);
        // Answer a batch as soon as no more input is waiting.
        if input.buffer().is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    let (mut packets, mut foreign, mut no_dest, mut lost) = (0, 0, 0, 0);
    for id in sessions.iter().copied() {
        for s in relay.close(id)? {
            packets += s.packets;
            foreign += s.dropped_foreign;
            no_dest += s.dropped_no_destination;
            lost += s.lost;
        }
    }
    let cpu = first_open.map_or(0.0, |(at, cpu0)| {
        100.0 * (cpu_seconds() - cpu0) / at.elapsed().as_secs_f64().max(1e-9)
    });
    let summary = format!(
        "relay-alloc{}: {} sessions closed; forwarded {packets} packets, dropped {foreign} \
         foreign and {no_dest} without destination, {lost} lost upstream; {} ports left in use; \
         CPU {cpu:.1}% of one core from the first open to EOF",
        if args.bare { " --bare" } else { "" },
        sessions.len(),
        relay.ports_in_use()
    );
    eprintln!("{summary}");
    if let Some(path) = args.report {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{summary}")?;
    }
    Ok(())
}

/// This process's user + system CPU time, from /proc/self/stat (0 where unavailable).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the `(comm)`: state is the 1st, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Holds on Linux: USER_HZ is 100 on every architecture the switch targets.
    (ticks(11) + ticks(12)) / 100.0
}
