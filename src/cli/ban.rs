//! `tambun ban list|add|rm`: the guard's ban list, edited in the database. A running switch
//! picks changes up within a second (the store thread polls `PRAGMA data_version`), like
//! extension edits; bans the switch added itself are listed with their reason and expiry.
//! A ban is of a guard source ([`SourceKey`]): an IPv4 address, or the /64 of an IPv6 one.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::Subcommand;

use super::output::{print_json, table, utc};
use super::{open_existing, GlobalArgs};
use crate::guard::{Ban, SourceKey};

#[derive(Debug, Subcommand)]
pub enum BanCommand {
    /// List the bans in force
    List {
        #[arg(long)]
        json: bool,
    },
    /// Ban an address: the switch drops everything it sends, silently
    ///
    /// An IPv6 address bans its whole /64, as the switch's own bans do.
    ///
    /// Examples:
    ///   tambun ban add 203.0.113.9 --reason "scanner seen on the firewall"
    ///   tambun ban add 2001:db8::7 --for 2h
    #[command(verbatim_doc_comment)]
    Add {
        #[arg(value_parser = parse_address)]
        address: SourceKey,
        /// How long: seconds, or with a unit (30m, 12h, 7d); without it, until `ban rm`
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<u64>,
        /// Why (shown by `ban list`)
        #[arg(long, default_value = "operator")]
        reason: String,
    },
    /// Lift the ban of an address (of its /64, for IPv6)
    Rm {
        #[arg(value_parser = parse_address)]
        address: SourceKey,
    },
}

pub fn run(global: &GlobalArgs, cmd: BanCommand) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match cmd {
        BanCommand::List { json } => {
            let store = open_existing(global)?;
            let bans = store.bans(now)?;
            if json {
                return print_json(&bans);
            }
            if bans.is_empty() {
                println!("no bans");
                return Ok(());
            }
            let mut t = table(&["ADDRESS", "REASON", "SINCE", "UNTIL"]);
            for b in &bans {
                t.add_row(vec![
                    SourceKey::of(b.address).to_string(),
                    b.reason.clone(),
                    utc(b.created_at),
                    b.expires_at.map_or_else(|| "until removed".to_owned(), utc),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        BanCommand::Add {
            address,
            duration,
            reason,
        } => {
            if reason.chars().any(char::is_control) || reason.chars().count() > 200 {
                bail!("the reason must be one line of at most 200 characters");
            }
            let mut store = open_existing(global)?;
            store.add_ban(&Ban {
                address: address.ip(),
                reason,
                created_at: now,
                expires_at: duration.map(|d| now.saturating_add(d as i64)),
            })?;
            match duration {
                Some(d) => println!("banned {address} until {}", utc(now + d as i64)),
                None => println!("banned {address} until `tambun ban rm {address}`"),
            }
            Ok(())
        }
        BanCommand::Rm { address } => {
            let mut store = open_existing(global)?;
            if !store.remove_ban(address.ip())? {
                bail!("{address} is not banned (see `tambun ban list`)");
            }
            println!("lifted the ban of {address}");
            Ok(())
        }
    }
}

pub(crate) fn parse_address(s: &str) -> Result<SourceKey, String> {
    s.trim().parse::<IpAddr>().map(SourceKey::of).map_err(|_| {
        format!("'{s}' is not an IP address (like 203.0.113.9 or 2001:db8::7; no port, no network)")
    })
}

/// `600`, `600s`, `30m`, `12h`, `7d` → seconds.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not a duration (like 600, 30m, 12h or 7d)");
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(mult) {
        Some(0) => Err(format!("'{s}': a ban must last at least one second")),
        Some(secs) if secs <= 100 * 365 * 86_400 => Ok(secs),
        _ => Err(format!(
            "'{s}' is longer than 100 years; leave --for out for a ban until removed"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Ok(600));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999d").is_err());
    }

    #[test]
    fn addresses() {
        assert!(parse_address("203.0.113.9").is_ok());
        assert!(parse_address("2001:db8::7").is_ok());
        assert!(parse_address("203.0.113.9:5060")
            .unwrap_err()
            .contains("not an IP address"));
    }
}
