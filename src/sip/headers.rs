//! Typed views of header values and URIs, parsed on demand from `&str` slices of a message.
//!
//! Owns the RFC 3261 §25 grammar of the values the switch reads: list splitting, generic
//! parameters, Via (RFC 3581 `rport`/`received`, RFC 5118 IPv6 references), name-addr and
//! addr-spec (From, To, Contact, Route), CSeq, delta-seconds, and SIP URIs. Views borrow from
//! the message; nothing is unescaped or copied. Folded whitespace (CR, LF) inside a value is
//! treated as LWS. No I/O; never panics on input.

use super::message::{is_token, Method, ParseError};

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n')
}

/// Length of the quoted string at the start of `s` (which begins with `"`), including both
/// quotes, honouring `\` escapes. `None` when it is not terminated.
fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Splits a list header value at commas that are outside quoted strings and `<…>`.
/// Empty elements are skipped; each element is trimmed.
pub fn split_list(v: &str) -> impl Iterator<Item = &str> {
    let b = v.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i, mut angle) = (0, 0, false);
    while i < b.len() {
        match b[i] {
            b'"' => match quoted_len(&b[i..]) {
                Some(n) => {
                    i += n;
                    continue;
                }
                None => i = b.len() - 1,
            },
            b'<' => angle = true,
            b'>' => angle = false,
            b',' if !angle => {
                parts.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&v[start..]);
    parts.into_iter().map(trim).filter(|p| !p.is_empty())
}

/// Parameters as written after a value: `;name[=value]` repeated. Lazily parsed; `iter`
/// reports malformed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a>(pub &'a str);

impl<'a> Params<'a> {
    /// Each parameter as (name, value); a quoted value keeps its quotes.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.0 }
    }

    /// Checks every parameter is well formed.
    pub fn validate(&self) -> Result<(), &'static str> {
        for p in self.iter() {
            p?;
        }
        Ok(())
    }

    /// The value of the first parameter with this name (case-insensitive): `Some(None)` for a
    /// parameter without `=value`.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .map_while(Result::ok)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

pub struct ParamIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Result<(&'a str, Option<&'a str>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest.trim_start_matches(|c: char| is_lws(c as u8));
        if s.is_empty() {
            return None;
        }
        let Some(s) = s.strip_prefix(';') else {
            self.rest = "";
            return Some(Err("parameters must start with ';'"));
        };
        let s = s.trim_start_matches(|c: char| is_lws(c as u8));
        let b = s.as_bytes();
        let name_len = b.iter().take_while(|&&c| is_token(c)).count();
        if name_len == 0 {
            self.rest = "";
            return Some(Err("empty parameter"));
        }
        let name = &s[..name_len];
        let after = s[name_len..].trim_start_matches(|c: char| is_lws(c as u8));
        if let Some(v) = after.strip_prefix('=') {
            let v = v.trim_start_matches(|c: char| is_lws(c as u8));
            let vb = v.as_bytes();
            let len = match vb.first() {
                Some(b'"') => match quoted_len(vb) {
                    Some(n) => n,
                    None => {
                        self.rest = "";
                        return Some(Err("unterminated quoted parameter"));
                    }
                },
                Some(b'[') => match memchr::memchr(b']', vb) {
                    Some(n) => n + 1,
                    None => {
                        self.rest = "";
                        return Some(Err("unterminated IPv6 reference"));
                    }
                },
                _ => vb
                    .iter()
                    .take_while(|&&c| !is_lws(c) && c != b';' && c != b',' && c != b'"')
                    .count(),
            };
            if len == 0 {
                self.rest = "";
                return Some(Err("empty parameter value"));
            }
            self.rest = &v[len..];
            Some(Ok((name, Some(&v[..len]))))
        } else {
            self.rest = after;
            Some(Ok((name, None)))
        }
    }
}

/// Removes the surrounding quotes of a quoted value (escapes are left as written).
pub fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// delta-seconds: digits, saturating at u32::MAX (RFC 3261 §20.19 for Expires).
pub fn parse_delta_seconds(v: &str) -> Option<u32> {
    let v = trim(v);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        v.bytes()
            .try_fold(0u32, |n, d| {
                n.checked_mul(10)?.checked_add((d - b'0') as u32)
            })
            .unwrap_or(u32::MAX),
    )
}

/// Checks a host: a hostname, an IPv4 address, or an IPv6 reference in brackets. The RFC 5118
/// three-colon form `[2001:db8:::192.0.2.1]` is tolerated.
fn valid_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !inner.is_empty()
            && inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Splits `host[:port]` with IPv6 references kept whole.
fn split_hostport(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']').ok_or("unterminated IPv6 reference")?;
        let (h, rest) = s.split_at(close + 1);
        match rest {
            "" => (h, None),
            r => (
                h,
                Some(r.strip_prefix(':').ok_or("junk after IPv6 reference")?),
            ),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !valid_host(host) {
        return Err("bad host");
    }
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("bad port");
            }
            Some(p.parse::<u16>().map_err(|_| "port out of range")?)
        }
    };
    Ok((host, port))
}

/// A URI as the switch needs it: SIP/SIPS fully, any other scheme kept opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    Sip(SipUri<'a>),
    /// Another scheme (`tel:`, `http:`, `isbn:` …): scheme and the rest, unparsed.
    Other {
        scheme: &'a str,
        rest: &'a str,
    },
}

/// `sip:`/`sips:` URI parts, borrowed and still escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    pub secure: bool,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// `?h=v&…` headers, without the `?`.
    pub headers: Option<&'a str>,
}

impl<'a> Uri<'a> {
    pub fn parse(s: &'a str) -> Result<Uri<'a>, &'static str> {
        let s = trim(s);
        if s.bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'<' || b == b'>')
        {
            return Err("whitespace or brackets inside a URI");
        }
        let (scheme, rest) = s.split_once(':').ok_or("no scheme")?;
        if scheme.is_empty()
            || !scheme.as_bytes()[0].is_ascii_alphabetic()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err("bad scheme");
        }
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else {
            if rest.is_empty() {
                return Err("empty URI");
            }
            return Ok(Uri::Other { scheme, rest });
        };
        // '@' appears only as the userinfo separator (params and headers must escape it),
        // while the user part may contain '?', ';' and ','.
        let (userinfo, after_user) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostpart, headers) = match after_user.split_once('?') {
            Some((m, h)) => (m, Some(h)),
            None => (after_user, None),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                if u.is_empty() {
                    return Err("empty user");
                }
                match u.split_once(':') {
                    Some((u, p)) => (Some(u), Some(p)),
                    None => (Some(u), None),
                }
            }
        };
        let hp_end = hostpart.find(';').unwrap_or(hostpart.len());
        let (host, port) = split_hostport(&hostpart[..hp_end])?;
        let params = Params(&hostpart[hp_end..]);
        params.validate()?;
        Ok(Uri::Sip(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        }))
    }

    pub fn sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }
}

/// A Via value: `SIP/2.0/UDP host:port;branch=…;rport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    pub fn parse(v: &'a str) -> Result<Via<'a>, ParseError> {
        let err = |reason| ParseError::Header {
            header: "Via",
            reason,
        };
        let mut rest = trim(v);
        let mut parts = [""; 3];
        for (i, part) in parts.iter_mut().enumerate() {
            let len = rest.bytes().take_while(|&b| is_token(b)).count();
            if len == 0 {
                return Err(err("bad sent-protocol"));
            }
            *part = &rest[..len];
            rest = rest[len..].trim_start_matches(|c: char| is_lws(c as u8));
            if i < 2 {
                rest = rest
                    .strip_prefix('/')
                    .ok_or(err("bad sent-protocol"))?
                    .trim_start_matches(|c: char| is_lws(c as u8));
            }
        }
        if !parts[0].eq_ignore_ascii_case("SIP") || parts[1] != "2.0" {
            return Err(err("not SIP/2.0"));
        }
        let hp_len = rest
            .bytes()
            .take_while(|&b| !is_lws(b) && b != b';')
            .count();
        if hp_len == 0 {
            return Err(err("no sent-by"));
        }
        let (host, port) = split_hostport(&rest[..hp_len]).map_err(err)?;
        let params = Params(&rest[hp_len..]);
        params.validate().map_err(err)?;
        Ok(Via {
            transport: parts[2],
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: rport asked for (RFC 3581); `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `host[:port]`, as used for transaction matching.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host.to_ascii_lowercase(), p),
            None => self.host.to_ascii_lowercase(),
        }
    }
}

/// `[display-name] <URI> *(;param)` or `addr-spec *(;param)` (From, To, Contact, Route, …).
/// In the addr-spec form every `;` parameter is a header parameter (RFC 3261 §20.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display: Option<&'a str>,
    /// The URI as written, without angle brackets.
    pub uri: &'a str,
    /// Whether the URI was enclosed in `<…>`.
    pub bracketed: bool,
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    pub fn parse(v: &'a str) -> Result<NameAddr<'a>, &'static str> {
        let v = trim(v);
        let b = v.as_bytes();
        // Display name: a quoted string, or tokens separated by LWS, before '<'.
        let (display, rest) = if b.first() == Some(&b'"') {
            let n = quoted_len(b).ok_or("unterminated quoted display name")?;
            let rest = v[n..].trim_start_matches(|c: char| is_lws(c as u8));
            if !rest.starts_with('<') {
                return Err("display name without <URI>");
            }
            (Some(&v[..n]), rest)
        } else if let Some(lt) = v.find('<').filter(|&lt| !v[..lt].contains(':')) {
            let dn = trim(&v[..lt]);
            if !dn.bytes().all(|c| is_token(c) || is_lws(c)) {
                return Err("display name is neither a token nor quoted");
            }
            ((!dn.is_empty()).then_some(dn), &v[lt..])
        } else {
            (None, v)
        };
        if let Some(inner) = rest.strip_prefix('<') {
            let gt = inner.find('>').ok_or("unterminated <URI>")?;
            let uri = &inner[..gt];
            Uri::parse_strict(uri)?;
            let params = Params(&inner[gt + 1..]);
            params.validate()?;
            return Ok(NameAddr {
                display,
                uri,
                bracketed: true,
                params,
            });
        }
        // addr-spec: ends at the first ';'; may not contain ',' '?' (they need brackets).
        let end = rest.find(';').unwrap_or(rest.len());
        let uri = trim(&rest[..end]);
        if uri.contains(['?', ',']) {
            return Err("URI with '?' or ',' must be enclosed in <>");
        }
        Uri::parse_strict(uri)?;
        let params = Params(&rest[end..]);
        params.validate()?;
        Ok(NameAddr {
            display,
            uri,
            bracketed: false,
            params,
        })
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    pub fn parsed_uri(&self) -> Result<Uri<'a>, &'static str> {
        Uri::parse(self.uri)
    }
}

impl<'a> Uri<'a> {
    /// Like [`Uri::parse`] but the input must not have surrounding whitespace (as inside
    /// `<…>`, where `< sip:x >` is malformed).
    fn parse_strict(s: &'a str) -> Result<Uri<'a>, &'static str> {
        if s.len() != trim(s).len() {
            return Err("whitespace inside <URI>");
        }
        Uri::parse(s)
    }
}

/// A Contact value: `*` or an address with `expires`, `q`, `+sip.instance`, `reg-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    Star,
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    pub fn parse(v: &'a str) -> Result<Contact<'a>, ParseError> {
        if trim(v) == "*" {
            return Ok(Contact::Star);
        }
        NameAddr::parse(v)
            .map(Contact::Addr)
            .map_err(|reason| ParseError::Header {
                header: "Contact",
                reason,
            })
    }

    pub fn addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }

    /// The `expires` contact parameter; a malformed value is `None` (the header or default
    /// applies).
    pub fn expires(&self) -> Option<u32> {
        self.addr()?
            .params
            .get("expires")
            .flatten()
            .and_then(parse_delta_seconds)
    }

    /// `+sip.instance` (RFC 5626), without its quotes.
    pub fn instance(&self) -> Option<&'a str> {
        self.addr()?
            .params
            .get("+sip.instance")
            .flatten()
            .map(unquote)
    }

    pub fn reg_id(&self) -> Option<u32> {
        self.addr()?.params.get("reg-id").flatten()?.parse().ok()
    }
}

/// CSeq: sequence number (32 bits) and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(v: &str) -> Result<CSeq, ParseError> {
        let err = |reason| ParseError::Header {
            header: "CSeq",
            reason,
        };
        let v = trim(v);
        let digits = v.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("no sequence number"));
        }
        let seq = v[..digits]
            .bytes()
            .try_fold(0u32, |n, d| {
                n.checked_mul(10)?.checked_add((d - b'0') as u32)
            })
            .ok_or(err("sequence number exceeds 2^32-1"))?;
        let rest = &v[digits..];
        let method_str = rest.trim_start_matches(|c: char| is_lws(c as u8));
        if method_str.len() == rest.len() {
            return Err(err("no space before the method"));
        }
        let method = Method::parse(method_str.as_bytes()).ok_or(err("bad method"))?;
        Ok(CSeq { seq, method })
    }
}

/// The user part of a SIP URI.
pub fn uri_user(uri: &str) -> Option<String> {
    match Uri::parse(uri) {
        Ok(Uri::Sip(u)) => u.user.map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        let v = r#""A, B" <sip:a@x;p=1,2>;q=1 , <sip:b@y>,,"#;
        let parts: Vec<_> = split_list(v).collect();
        assert_eq!(parts, vec![r#""A, B" <sip:a@x;p=1,2>;q=1"#, "<sip:b@y>"]);
    }

    #[test]
    fn via_with_lws_and_ipv6() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v =
            Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
                .unwrap();
        assert_eq!(v.host, "[2001:db8::9:1]");
        assert_eq!(v.received(), Some("2001:db8::9:255"));
        assert_eq!(v.branch(), Some("z9hG4bKas3"));
        let v = Via::parse("SIP/2.0/TCP 127.0.0.1:5080;rport;branch=z9hG4bKx").unwrap();
        assert_eq!(v.port, Some(5080));
        assert_eq!(v.rport(), Some(None));
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse(";").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(n.uri, "sip:jdrosen@example.com");
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert_eq!(n.uri, "sip:+19725552222@gw1.example.net");
        assert!(n.params.has("unknownparam"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display, Some("caller"));
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse("< sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").is_ok());
    }

    #[test]
    fn sip_uris() {
        let Uri::Sip(u) = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap() else {
            panic!()
        };
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        let Uri::Sip(u) = Uri::parse("sip:[2001:db8::10:5070]").unwrap() else {
            panic!()
        };
        assert_eq!((u.host, u.port), ("[2001:db8::10:5070]", None));
        let Uri::Sip(u) = Uri::parse("sip:[2001:db8::10]:5070;transport=tcp").unwrap() else {
            panic!()
        };
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params.get("transport"), Some(Some("tcp")));
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(matches!(
            Uri::parse("tel:+1234").unwrap(),
            Uri::Other { .. }
        ));
    }

    #[test]
    fn cseq_limits() {
        assert_eq!(CSeq::parse("0009\r\n  INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 INVITE").is_err());
        assert!(CSeq::parse("1INVITE").is_err());
    }

    #[test]
    fn contact_params() {
        let c = Contact::parse(
            r#"<sip:1000@10.0.0.1:5060;ob>;expires=120;+sip.instance="<urn:uuid:abc>";reg-id=1"#,
        )
        .unwrap();
        assert_eq!(c.expires(), Some(120));
        assert_eq!(c.instance(), Some("<urn:uuid:abc>"));
        assert_eq!(c.reg_id(), Some(1));
        assert_eq!(Contact::parse(" * ").unwrap(), Contact::Star);
    }
}
