//! What the load clients in `benches/` (`webrtc_load`, `conference_load`) share: a small
//! SIP message reader, an MD5 digest answer to a challenge, an SDP's audio (or video) address, a
//! process's CPU time from /proc, and a minimal epoll. Each bench includes it with
//! `#[path = "common/mod.rs"] mod common;` and uses what it needs (hence `dead_code` is
//! allowed where it is included). Not a general SIP stack: just enough to drive the switch.

use anyhow::bail;
use md5::{Digest as _, Md5};
use rand::Rng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub(crate) struct Msg {
    pub(crate) start: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Msg {
    pub(crate) fn parse(raw: &[u8]) -> Option<Msg> {
        let text = std::str::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let start = lines.next()?.to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (expand(n.trim()), v.trim().to_string()))
            .collect();
        Some(Msg {
            start,
            headers,
            body: body.to_string(),
        })
    }
    pub(crate) fn status(&self) -> u16 {
        match self.start.strip_prefix("SIP/2.0 ") {
            Some(rest) => rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0),
            None => 0,
        }
    }
    pub(crate) fn method(&self) -> &str {
        if self.status() != 0 {
            return "";
        }
        self.start.split(' ').next().unwrap_or("")
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub(crate) fn call_id(&self) -> &str {
        self.header("call-id").unwrap_or("")
    }
    /// CSeq number and method.
    pub(crate) fn cseq(&self) -> (u32, &str) {
        let c = self.header("cseq").unwrap_or("");
        let mut w = c.split_whitespace();
        let n = w.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (n, w.next().unwrap_or(""))
    }
    pub(crate) fn cseq_method(&self) -> &str {
        self.cseq().1
    }
    /// The URI inside the first Contact's `<>`.
    pub(crate) fn contact_uri(&self) -> Option<String> {
        let c = self.header("contact")?;
        let c = c.split_once('<').map_or(c, |(_, r)| r);
        Some(c.split('>').next()?.to_string())
    }
    pub(crate) fn summary(&self) -> String {
        format!("{} ({} {})", self.start, self.call_id(), self.cseq_method())
    }
}

pub(crate) fn expand(name: &str) -> String {
    let l = name.to_ascii_lowercase();
    match l.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        _ => return l,
    }
    .to_string()
}

pub(crate) fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

pub(crate) fn split_params(s: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.chars().chain(std::iter::once(',')) {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                if let Some((k, v)) = cur.split_once('=') {
                    out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
                cur.clear();
            }
            _ => cur.push(ch),
        }
    }
    out
}

/// An `Authorization`/`Proxy-Authorization` value for the first MD5 digest challenge.
pub(crate) fn authorization(
    challenges: &[&str],
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> anyhow::Result<String> {
    for ch in challenges {
        let Some(rest) = ch.strip_prefix("Digest").map(str::trim) else {
            continue;
        };
        let p = split_params(rest);
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if get("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("md5")) {
            continue;
        }
        let (Some(realm), Some(nonce)) = (get("realm"), get("nonce")) else {
            continue;
        };
        let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let mut v = format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5"
        );
        if get("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth")) {
            let cnonce = token("");
            let r = md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
            v.push_str(&format!(
                ", qop=auth, nc=00000001, cnonce=\"{cnonce}\", response=\"{r}\""
            ));
        } else {
            let r = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            v.push_str(&format!(", response=\"{r}\""));
        }
        if let Some(o) = get("opaque") {
            v.push_str(&format!(", opaque=\"{o}\""));
        }
        return Ok(v);
    }
    bail!("no MD5 digest challenge in {challenges:?}")
}

pub(crate) fn token(prefix: &str) -> String {
    let n: u64 = rand::thread_rng().gen();
    format!("{prefix}{n:016x}")
}

/// `c=` address and first `m=audio` port of an SDP.
pub(crate) fn sdp_media_addr(sdp: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for l in sdp.lines() {
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            ip = ip.or(c.trim().parse::<Ipv4Addr>().ok());
        }
        if let Some(m) = l.strip_prefix("m=audio ") {
            port = port.or(m
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok()));
        }
    }
    Some(SocketAddr::new(IpAddr::V4(ip?), port?))
}

/// The address and first payload type of the first `m=KIND` line of an SDP whose port is not
/// 0 (a refused line): the line's own `c=` if it has one, else the session's.
pub(crate) fn sdp_media(sdp: &str, kind: &str) -> Option<(SocketAddr, u8)> {
    let prefix = format!("m={kind} ");
    let mut session_ip = None;
    // Inside the wanted m-section: its port, payload type and own c=, if any.
    let mut found: Option<(u16, u8, Option<Ipv4Addr>)> = None;
    let (mut in_media, mut in_wanted) = (false, false);
    for l in sdp.lines() {
        if l.starts_with("m=") {
            if found.is_some() {
                break;
            }
            in_media = true;
            if let Some(rest) = l.strip_prefix(prefix.as_str()) {
                let mut w = rest.split_whitespace();
                let port = w.next().and_then(|p| p.parse::<u16>().ok());
                let pt = w.nth(1).and_then(|p| p.parse::<u8>().ok());
                if let (Some(port), Some(pt)) = (port, pt) {
                    if port != 0 {
                        found = Some((port, pt, None));
                        in_wanted = true;
                    }
                }
            }
            continue;
        }
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            let ip = c.trim().parse::<Ipv4Addr>().ok();
            match found.as_mut() {
                Some(f) if in_wanted => f.2 = f.2.or(ip),
                _ if !in_media => session_ip = session_ip.or(ip),
                _ => {}
            }
        }
    }
    let (port, pt, ip) = found?;
    Some((SocketAddr::new(IpAddr::V4(ip.or(session_ip)?), port), pt))
}

pub(crate) fn parse_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.split_once('=').unwrap_or(("server", s));
    let pid = pid.parse().map_err(|_| format!("bad pid in '{s}'"))?;
    Ok((name.to_string(), pid))
}

/// utime+stime (s) of the processes and all their descendants.
pub(crate) fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter()
        .map(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return 0.0;
            };
            let f: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(vec![], |(_, r)| r.split_whitespace().collect());
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (t(11) + t(12)) / 100.0 // USER_HZ is 100 on Linux
        })
        .sum()
}

/// `pid` and every process below it.
pub(crate) fn with_descendants(pid: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = vec![];
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            parent.push((p, ppid));
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

pub(crate) struct Epoll(i32);

impl Epoll {
    pub(crate) fn new() -> anyhow::Result<Epoll> {
        // SAFETY: plain syscall, the fd is owned by the returned value.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            bail!("epoll_create1: {}", std::io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }
    pub(crate) fn add(&self, fd: i32, token: u64) -> anyhow::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is valid for the call; the kernel copies it.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            bail!("epoll_ctl: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
    pub(crate) fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: the buffer outlives the call and its length is passed.
        let n = unsafe {
            libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms)
        };
        n.max(0) as usize
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}
