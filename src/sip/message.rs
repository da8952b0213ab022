//! The SIP message: one `Bytes` buffer plus spans for the start line, each header and the body.
//!
//! Owns: parsing (RFC 3261 §7 and §25: compact names, folding, LWS before `:`, CRLF or bare LF
//! line ends), datagram and stream framing (Content-Length, RFC 5626 keep-alives), size and
//! header-count limits, and edits by splicing (add/remove/replace a header, insert into a value,
//! swap the body) that copy the untouched bytes once instead of re-rendering the message.
//! Typed views of header values live in [`super::headers`] and parse on demand.
//!
//! Must not: do I/O, read the clock, allocate per header beyond the span table, or panic on any
//! input (every index is checked; the fuzz target in `fuzz/` holds us to it).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::headers::{self, CSeq};

/// Why a message could not be parsed. Each maps to the status a request gets ([`Self::status`]);
/// a response that fails to parse is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("sip parse: message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("sip parse: more than {0} header lines")]
    TooManyHeaders(usize),
    #[error("sip parse: no empty line ends the headers")]
    Incomplete,
    #[error("sip parse: bad start line: {0}")]
    StartLine(&'static str),
    #[error("sip parse: unsupported SIP version")]
    Version,
    #[error("sip parse: header section is not UTF-8")]
    NotUtf8,
    #[error("sip parse: bad header line: {0}")]
    HeaderLine(&'static str),
    #[error("sip parse: bad {header} header: {reason}")]
    Header {
        header: &'static str,
        reason: &'static str,
    },
    #[error("sip parse: missing {0} header")]
    Missing(&'static str),
    #[error("sip parse: more than one {0} header")]
    Duplicate(&'static str),
    #[error("sip parse: body shorter than Content-Length")]
    ShortBody,
    #[error("sip parse: CSeq method does not match the request method")]
    CSeqMismatch,
}

impl ParseError {
    /// The status code a request with this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::TooLarge(_) => 513,
            ParseError::Version => 505,
            _ => 400,
        }
    }

    /// The reason phrase for [`Self::status`], specific enough to debug a phone with.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::TooLarge(_) => "Message Too Large",
            ParseError::TooManyHeaders(_) => "Too Many Headers",
            ParseError::Version => "Version Not Supported",
            ParseError::Missing(_) => "Missing Mandatory Header",
            ParseError::CSeqMismatch => "CSeq Method Mismatch",
            ParseError::ShortBody => "Body Shorter Than Content-Length",
            _ => "Bad Request",
        }
    }
}

/// Limits applied while parsing, so a hostile peer cannot make us hold or scan unbounded data.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Whole message (head and body), in bytes.
    pub max_message: usize,
    /// Header lines (folded continuation lines count with their header).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 65_535,
            max_headers: 128,
        }
    }
}

/// A byte range into the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A request method. Methods are case-sensitive (RFC 3261 §7.1): `invite` is an extension method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(Box<str>),
}

impl Method {
    /// Parses a method token (RFC 3261 `token` characters only).
    pub fn parse(s: &[u8]) -> Option<Method> {
        if s.is_empty() || !s.iter().all(|&b| is_token(b)) {
            return None;
        }
        Some(match s {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            // Holds: token characters are ASCII.
            other => Method::Other(std::str::from_utf8(other).ok()?.into()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header names the switch reads, recognised in full and compact form, case-insensitively.
/// Everything else is `Other` and is kept byte-exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    Expires,
    MinExpires,
    MaxForwards,
    Route,
    RecordRoute,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    ContentLength,
    ContentType,
    UserAgent,
    Server,
    Require,
    ProxyRequire,
    Supported,
    Allow,
    Other,
}

impl HeaderName {
    /// Recognises a header name; `name` is the token before the colon.
    pub fn parse(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'm' => HeaderName::Contact,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'k' => HeaderName::Supported,
                _ => HeaderName::Other,
            };
        }
        const NAMES: &[(&[u8], HeaderName)] = &[
            (b"via", HeaderName::Via),
            (b"from", HeaderName::From),
            (b"to", HeaderName::To),
            (b"call-id", HeaderName::CallId),
            (b"cseq", HeaderName::CSeq),
            (b"contact", HeaderName::Contact),
            (b"expires", HeaderName::Expires),
            (b"min-expires", HeaderName::MinExpires),
            (b"max-forwards", HeaderName::MaxForwards),
            (b"route", HeaderName::Route),
            (b"record-route", HeaderName::RecordRoute),
            (b"authorization", HeaderName::Authorization),
            (b"proxy-authorization", HeaderName::ProxyAuthorization),
            (b"www-authenticate", HeaderName::WwwAuthenticate),
            (b"proxy-authenticate", HeaderName::ProxyAuthenticate),
            (b"content-length", HeaderName::ContentLength),
            (b"content-type", HeaderName::ContentType),
            (b"user-agent", HeaderName::UserAgent),
            (b"server", HeaderName::Server),
            (b"require", HeaderName::Require),
            (b"proxy-require", HeaderName::ProxyRequire),
            (b"supported", HeaderName::Supported),
            (b"allow", HeaderName::Allow),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(HeaderName::Other, |&(_, h)| h)
    }

    /// The canonical long name, as the switch writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Supported => "Supported",
            HeaderName::Allow => "Allow",
            HeaderName::Other => "(other)",
        }
    }

    /// Headers whose values are comma-separated lists (RFC 3261 §7.3.1), so that
    /// [`Message::values`] splits them.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Supported
                | HeaderName::Allow
        )
    }
}

/// One header field: its recognised name and the spans of its raw name, its value (trimmed,
/// folding included) and its whole line(s) including the line end.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub name: HeaderName,
    pub raw_name: Span,
    pub value: Span,
    pub line: Span,
}

/// What the first line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: Span },
    Response { status: u16, reason: Span },
}

/// A parsed SIP message. Cheap to clone (the buffer is reference-counted).
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    start: StartLine,
    start_line: Span,
    headers: Vec<Header>,
    /// Where the empty line that ends the headers begins.
    head_end: usize,
    body: Span,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field(
                "start",
                &String::from_utf8_lossy(self.slice(self.start_line)),
            )
            .field("headers", &self.headers.len())
            .field("body", &self.body.len())
            .finish()
    }
}

/// How a stream buffer starts, for TCP/TLS framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed.
    Incomplete,
    /// A CRLF keep-alive: `CRLF CRLF` (RFC 5626 ping, answer with one CRLF) when `ping`,
    /// otherwise a stray CRLF to skip. Consume `len` bytes.
    KeepAlive { len: usize, ping: bool },
    /// A whole message of `len` bytes is at the front of the buffer.
    Message { len: usize },
}

impl Message {
    /// The server transaction key of this request (RFC 3261 §17.2.3), with the RFC 2543 fallback for
    /// branches without the magic cookie.
    pub fn transaction_key(&self) -> Option<super::transaction::TransactionKey> {
        use super::transaction::{TransactionKey, TxMethod};
        let via = self.top_via().ok()?;
        let method = TxMethod::from_token(self.method()?.as_str());
        let sent_by = via.sent_by();
        match via.branch() {
            Some(b) if b.starts_with(TransactionKey::MAGIC_COOKIE) && b.len() > 7 => {
                Some(TransactionKey::new(b, &sent_by, method))
            }
            _ => {
                // RFC 2543: Request-URI, From tag, Call-ID, CSeq number and top Via identify it.
                let from_tag = self.from_tag().unwrap_or("");
                let synthetic = format!(
                    "2543|{}|{}|{}|{}",
                    self.request_uri().unwrap_or(""),
                    from_tag,
                    self.call_id().ok()?,
                    self.cseq().ok()?.seq
                );
                Some(TransactionKey::new(synthetic, &sent_by, method))
            }
        }
    }

    /// Parses one datagram (UDP): the body is the first Content-Length bytes after the head,
    /// or the rest of the datagram when Content-Length is absent; trailing bytes are ignored.
    pub fn parse_datagram(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        if buf.len() > limits.max_message {
            return Err(ParseError::TooLarge(buf.len()));
        }
        Self::parse_inner(buf, limits, false, false)
    }

    /// Parses a request that failed [`Self::parse_datagram`] or [`Self::parse_framed`] as far
    /// as needed to address an error response to it: no limits, any SIP version, and a bad or
    /// short Content-Length taken as "the rest". Never use the result for anything else.
    pub fn parse_for_error_reply(buf: Bytes) -> Result<Message, ParseError> {
        let relaxed = Limits {
            max_message: usize::MAX,
            max_headers: usize::MAX,
        };
        Self::parse_inner(buf, &relaxed, false, true)
    }

    /// Parses one message framed by [`frame_stream`] (TCP/TLS): Content-Length is mandatory
    /// in spirit; absent means an empty body.
    pub fn parse_framed(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        Self::parse_inner(buf, limits, true, false)
    }

    fn parse_inner(
        buf: Bytes,
        limits: &Limits,
        stream: bool,
        lenient: bool,
    ) -> Result<Message, ParseError> {
        let b = &buf[..];
        // Leading CRLFs before a message are ignored (RFC 3261 §7.5).
        let mut pos = 0;
        while pos < b.len() && (b[pos] == b'\r' || b[pos] == b'\n') {
            pos += 1;
        }
        let (head_end, body_start) = find_head_end(b, pos).ok_or(ParseError::Incomplete)?;
        if std::str::from_utf8(&b[pos..head_end]).is_err() {
            return Err(ParseError::NotUtf8);
        }
        let (first_end, after_first) = line_end(b, pos, head_end);
        let start_line = Span::new(pos, first_end);
        let start = match parse_start_line(&b[pos..first_end], pos) {
            Err(ParseError::Version) if lenient => {
                let line = &b[pos..first_end];
                let as_v2: Vec<u8> = match line.iter().rposition(|&c| c == b' ') {
                    Some(sp) if !line.starts_with(b"SIP/") => {
                        [&line[..sp], b" SIP/2.0".as_slice()].concat()
                    }
                    _ => return Err(ParseError::Version),
                };
                parse_start_line(&as_v2, pos)?
            }
            other => other?,
        };

        let mut headers: Vec<Header> = Vec::with_capacity(16);
        let mut at = after_first;
        while at < head_end {
            let (end, next) = line_end(b, at, head_end);
            let line = &b[at..end];
            if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
                // Folded continuation of the previous header's value.
                let last = headers.last_mut().ok_or(ParseError::HeaderLine(
                    "continuation line before any header",
                ))?;
                let trimmed_end = rtrim(b, at, end);
                if trimmed_end > at && trimmed_end > last.value.start {
                    if last.value.is_empty() {
                        last.value.start = ltrim(b, at, trimmed_end);
                    }
                    last.value.end = trimmed_end;
                }
                last.line.end = next;
                at = next;
                continue;
            }
            if headers.len() >= limits.max_headers {
                return Err(ParseError::TooManyHeaders(limits.max_headers));
            }
            let colon = memchr::memchr(b':', line).ok_or(ParseError::HeaderLine("no colon"))?;
            let name_end = rtrim(b, at, at + colon);
            let raw_name = Span::new(at, name_end);
            if raw_name.is_empty() || !b[at..name_end].iter().all(|&c| is_token(c)) {
                return Err(ParseError::HeaderLine("header name is not a token"));
            }
            let vstart = ltrim(b, at + colon + 1, end);
            let vend = rtrim(b, vstart, end);
            headers.push(Header {
                name: HeaderName::parse(&b[at..name_end]),
                raw_name,
                value: Span::new(vstart, vend),
                line: Span::new(at, next),
            });
            at = next;
        }

        let mut msg = Message {
            buf,
            start,
            start_line,
            headers,
            head_end,
            body: Span::new(body_start, body_start),
        };
        let available = msg.buf.len() - body_start;
        let content_length = match msg.content_length() {
            Err(_) if lenient => None,
            other => other?,
        };
        msg.body.end = match content_length {
            Some(cl) if cl > available && lenient => msg.buf.len(),
            Some(cl) if cl > available => return Err(ParseError::ShortBody),
            Some(cl) => body_start + cl,
            None if stream => body_start,
            None => msg.buf.len(),
        };
        Ok(msg)
    }

    /// The Content-Length value, if present. Several equal values are tolerated; different ones,
    /// a negative or non-numeric one are errors.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        let mut found: Option<usize> = None;
        for h in self.headers_named(HeaderName::ContentLength) {
            let n = parse_decimal(self.slice(h.value)).ok_or(ParseError::Header {
                header: "Content-Length",
                reason: "not a non-negative number",
            })?;
            match found {
                Some(prev) if prev != n => return Err(ParseError::Duplicate("Content-Length")),
                _ => found = Some(n),
            }
        }
        Ok(found)
    }

    /// The whole buffer the message was parsed from (for UDP, possibly with trailing bytes that
    /// are not part of the message; see [`Self::wire`]).
    pub fn buffer(&self) -> &Bytes {
        &self.buf
    }

    /// The message as it goes on the wire: start of the start line to the end of the body.
    pub fn wire(&self) -> Bytes {
        self.buf.slice(self.start_line.start..self.body.end)
    }

    pub fn start(&self) -> &StartLine {
        &self.start
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI, as written.
    pub fn request_uri(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            StartLine::Response { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(self.text(reason)),
            StartLine::Request { .. } => None,
        }
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = &Header> + '_ {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// Headers that are not recognised, found by their name case-insensitively.
    pub fn headers_by_raw_name<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Header> {
        self.headers
            .iter()
            .filter(move |h| self.slice(h.raw_name).eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers_named(name).next().map(|h| self.text(h.value))
    }

    /// The value of a header that must appear at most once.
    pub fn single(&self, name: HeaderName) -> Result<Option<&str>, ParseError> {
        let mut it = self.headers_named(name);
        let first = it.next().map(|h| self.text(h.value));
        if it.next().is_some() {
            return Err(ParseError::Duplicate(name.as_str()));
        }
        Ok(first)
    }

    /// Every value of a header, list headers split at top-level commas (outside quotes and
    /// angle brackets), each value trimmed. Empty elements are skipped.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        self.headers_named(name).flat_map(move |h| {
            let v = self.text(h.value);
            let parts: Box<dyn Iterator<Item = &str>> = if name.is_list() {
                Box::new(headers::split_list(v))
            } else {
                Box::new(std::iter::once(v))
            };
            parts
        })
    }

    pub fn body(&self) -> &[u8] {
        self.slice(self.body)
    }

    pub fn body_span(&self) -> Span {
        self.body
    }

    pub fn head_end(&self) -> usize {
        self.head_end
    }

    pub fn start_line_span(&self) -> Span {
        self.start_line
    }

    pub fn slice(&self, span: Span) -> &[u8] {
        &self.buf[span.start..span.end]
    }

    /// A span of the header section as text.
    pub fn text(&self, span: Span) -> &str {
        // Holds: the head was checked to be UTF-8 at parse time and spans are cut at ASCII
        // delimiters, so they are char boundaries; the body is never passed here.
        std::str::from_utf8(self.slice(span)).unwrap_or("")
    }

    /// The Call-ID (required).
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self
            .single(HeaderName::CallId)?
            .ok_or(ParseError::Missing("Call-ID"))?;
        if v.is_empty() || v.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(ParseError::Header {
                header: "Call-ID",
                reason: "empty or contains whitespace",
            });
        }
        Ok(v)
    }

    /// The CSeq (required).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        let v = self
            .single(HeaderName::CSeq)?
            .ok_or(ParseError::Missing("CSeq"))?;
        CSeq::parse(v)
    }

    /// The topmost Via (required).
    pub fn top_via(&self) -> Result<headers::Via<'_>, ParseError> {
        let v = self
            .values(HeaderName::Via)
            .next()
            .ok_or(ParseError::Missing("Via"))?;
        headers::Via::parse(v)
    }

    pub fn from(&self) -> Result<headers::NameAddr<'_>, ParseError> {
        let v = self
            .single(HeaderName::From)?
            .ok_or(ParseError::Missing("From"))?;
        headers::NameAddr::parse(v).map_err(|r| ParseError::Header {
            header: "From",
            reason: r,
        })
    }

    pub fn to(&self) -> Result<headers::NameAddr<'_>, ParseError> {
        let v = self
            .single(HeaderName::To)?
            .ok_or(ParseError::Missing("To"))?;
        headers::NameAddr::parse(v).map_err(|r| ParseError::Header {
            header: "To",
            reason: r,
        })
    }

    /// The From tag, if From parses and has one.
    pub fn from_tag(&self) -> Option<&str> {
        self.from().ok().and_then(|f| f.tag())
    }

    /// The To tag: present on responses and in-dialog requests.
    pub fn to_tag(&self) -> Option<&str> {
        self.to().ok().and_then(|t| t.tag())
    }

    /// Max-Forwards, if present (0..=255).
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        match self.single(HeaderName::MaxForwards)? {
            None => Ok(None),
            Some(v) => parse_decimal(v.as_bytes())
                .and_then(|n| u8::try_from(n).ok())
                .map(Some)
                .ok_or(ParseError::Header {
                    header: "Max-Forwards",
                    reason: "not a number from 0 to 255",
                }),
        }
    }

    /// The Expires header, if present (delta-seconds, saturating at u32::MAX).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.single(HeaderName::Expires)? {
            None => Ok(None),
            Some(v) => headers::parse_delta_seconds(v)
                .map(Some)
                .ok_or(ParseError::Header {
                    header: "Expires",
                    reason: "not delta-seconds",
                }),
        }
    }

    /// Every Contact value, `*` included.
    pub fn contacts(&self) -> Result<Vec<headers::Contact<'_>>, ParseError> {
        self.values(HeaderName::Contact)
            .map(headers::Contact::parse)
            .collect()
    }

    /// Checks what every request must carry before the switch acts on it (RFC 3261 §8.1.1):
    /// To, From, Call-ID, CSeq matching the method, at least one well-formed Via, a sane
    /// Max-Forwards, parseable Contacts, a Request-URI that is a URI. The RFC 4475 invalid
    /// messages fail here or in the parser.
    pub fn validate_request(&self) -> Result<(), ParseError> {
        let StartLine::Request { method, uri } = &self.start else {
            return self.validate_response();
        };
        let ruri = headers::Uri::parse(self.text(*uri)).map_err(|reason| ParseError::Header {
            header: "Request-URI",
            reason,
        })?;
        if ruri.sip().is_some_and(|u| u.headers.is_some()) {
            // RFC 3261 §19.1.5: headers are not allowed in a Request-URI.
            return Err(ParseError::Header {
                header: "Request-URI",
                reason: "escaped headers are not allowed in a Request-URI",
            });
        }
        self.from()?;
        self.to()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if &cseq.method != method {
            return Err(ParseError::CSeqMismatch);
        }
        let mut vias = 0;
        for v in self.values(HeaderName::Via) {
            headers::Via::parse(v)?;
            vias += 1;
        }
        if vias == 0 {
            return Err(ParseError::Missing("Via"));
        }
        self.max_forwards()?;
        self.expires()?;
        self.contacts()?;
        Ok(())
    }

    /// Checks a response enough to route it back: Via, CSeq, Call-ID, From, To.
    pub fn validate_response(&self) -> Result<(), ParseError> {
        self.top_via()?;
        self.cseq()?;
        self.call_id()?;
        self.from()?;
        self.to()?;
        Ok(())
    }

    /// Starts a splicing edit of this message.
    pub fn edit(&self) -> Editor<'_> {
        Editor {
            msg: self,
            ops: Vec::new(),
            body: None,
        }
    }
}

/// Frames the front of a stream buffer (TCP/TLS): a keep-alive, a whole message, or
/// "need more". Errors mean the connection must be closed (bad or conflicting Content-Length,
/// oversized message).
pub fn frame_stream(buf: &[u8], limits: &Limits) -> Result<Frame, ParseError> {
    if buf.starts_with(b"\r\n\r\n") {
        return Ok(Frame::KeepAlive { len: 4, ping: true });
    }
    if buf.starts_with(b"\r\n") {
        if buf.len() < 4 && b"\r\n\r\n".starts_with(buf) {
            return Ok(Frame::Incomplete);
        }
        return Ok(Frame::KeepAlive {
            len: 2,
            ping: false,
        });
    }
    if buf.starts_with(b"\n") {
        return Ok(Frame::KeepAlive {
            len: 1,
            ping: false,
        });
    }
    let Some((_, body_start)) = find_head_end(buf, 0) else {
        if buf.len() > limits.max_message {
            return Err(ParseError::TooLarge(buf.len()));
        }
        return Ok(Frame::Incomplete);
    };
    // Find the Content-Length the parser will find: the start line is not a header, and a
    // line starting with SP/HTAB continues the previous header (it is never a header itself,
    // and it belongs to a folded Content-Length value).
    let mut cl: Option<usize> = None;
    let (_, mut at) = line_end(buf, 0, body_start);
    while at < body_start {
        let (end, mut next) = line_end(buf, at, body_start);
        let line = &buf[at..end];
        let mut value_end = end;
        while next < body_start && matches!(buf[next], b' ' | b'\t') {
            (value_end, next) = line_end(buf, next, body_start);
        }
        if let Some(colon) = memchr::memchr(b':', line) {
            let name = trim_bytes(&line[..colon]);
            if HeaderName::parse(name) == HeaderName::ContentLength {
                let value = trim_bytes(&buf[at + colon + 1..value_end]);
                let n = parse_decimal(value).ok_or(ParseError::Header {
                    header: "Content-Length",
                    reason: "not a non-negative number",
                })?;
                if cl.is_some_and(|p| p != n) {
                    return Err(ParseError::Duplicate("Content-Length"));
                }
                cl = Some(n);
            }
        }
        if next <= at {
            break;
        }
        at = next;
    }
    let len = body_start
        .checked_add(cl.unwrap_or(0))
        .ok_or(ParseError::TooLarge(usize::MAX))?;
    if len > limits.max_message {
        return Err(ParseError::TooLarge(len));
    }
    if buf.len() < len {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Message { len })
}

/// Is this datagram a keep-alive or other noise rather than SIP (CRLFs, NULs, a STUN packet)?
pub fn is_datagram_keepalive(buf: &[u8]) -> bool {
    buf.iter()
        .all(|&b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
}

/// A pending splice: replace `span` with `with`.
struct Op {
    span: Span,
    with: Bytes,
    /// Orders inserts at the same position: lower first.
    seq: usize,
}

/// Edits a message by splicing: collects replacements of byte ranges, then copies the message
/// once. Header line arguments are given without the line end; the editor adds CRLF.
pub struct Editor<'m> {
    msg: &'m Message,
    ops: Vec<Op>,
    body: Option<Bytes>,
}

impl<'m> Editor<'m> {
    fn push(&mut self, span: Span, with: Bytes) -> &mut Self {
        let seq = self.ops.len();
        self.ops.push(Op { span, with, seq });
        self
    }

    fn line(line: &str) -> Bytes {
        let mut b = BytesMut::with_capacity(line.len() + 2);
        b.put_slice(line.as_bytes());
        b.put_slice(b"\r\n");
        b.freeze()
    }

    /// Replaces the Request-URI.
    pub fn set_request_uri(&mut self, uri: &str) -> &mut Self {
        if let StartLine::Request { uri: span, .. } = self.msg.start {
            self.push(span, Bytes::copy_from_slice(uri.as_bytes()));
        }
        self
    }

    /// Removes a header line (with its folded continuation lines).
    pub fn remove_header(&mut self, h: &Header) -> &mut Self {
        self.push(h.line, Bytes::new())
    }

    /// Replaces the whole value of a header.
    pub fn replace_value(&mut self, h: &Header, value: &str) -> &mut Self {
        self.push(h.value, Bytes::copy_from_slice(value.as_bytes()))
    }

    /// Replaces an arbitrary span of the head (e.g. one element of a list header).
    pub fn replace(&mut self, span: Span, with: &str) -> &mut Self {
        self.push(span, Bytes::copy_from_slice(with.as_bytes()))
    }

    /// Inserts text at a byte offset of the head (e.g. `;received=…` after a Via).
    pub fn insert_at(&mut self, at: usize, text: &str) -> &mut Self {
        self.push(Span::new(at, at), Bytes::copy_from_slice(text.as_bytes()))
    }

    /// Adds a header line right after the start line (a new top Via, Record-Route).
    pub fn prepend_header(&mut self, line: &str) -> &mut Self {
        let at = self
            .msg
            .headers
            .first()
            .map_or(self.msg.head_end, |h| h.line.start);
        self.push(Span::new(at, at), Self::line(line))
    }

    /// Adds a header line before the first header with this name, or at the top of the
    /// headers if there is none.
    pub fn insert_before(&mut self, name: HeaderName, line: &str) -> &mut Self {
        let at = self
            .msg
            .headers_named(name)
            .next()
            .or(self.msg.headers.first())
            .map_or(self.msg.head_end, |h| h.line.start);
        self.push(Span::new(at, at), Self::line(line))
    }

    /// Adds a header line at the end of the headers.
    pub fn append_header(&mut self, line: &str) -> &mut Self {
        let at = self.msg.head_end;
        self.push(Span::new(at, at), Self::line(line))
    }

    /// Replaces the body; Content-Length is rewritten to match on [`Self::finish`].
    pub fn set_body(&mut self, body: Bytes) -> &mut Self {
        self.body = Some(body);
        self
    }

    /// Copies the message once with every splice applied.
    pub fn finish(mut self) -> Bytes {
        let msg = self.msg;
        if let Some(body) = self.body.take() {
            let cl = format!("{}", body.len());
            let mut found = false;
            let cls: Vec<Header> = msg
                .headers_named(HeaderName::ContentLength)
                .copied()
                .collect();
            for h in &cls {
                if !found {
                    self.push(h.value, Bytes::from(cl.clone()));
                    found = true;
                } else {
                    self.push(h.line, Bytes::new());
                }
            }
            if !found {
                self.append_header(&format!("Content-Length: {cl}"));
            }
            self.push(msg.body, body);
        }
        self.ops
            .sort_by_key(|op| (op.span.start, op.span.end, op.seq));
        let src = &msg.buf[..];
        let extra: usize = self.ops.iter().map(|o| o.with.len()).sum();
        let mut out = BytesMut::with_capacity(msg.body.end - msg.start_line.start + extra);
        let mut at = msg.start_line.start;
        for op in &self.ops {
            // Overlapping edits are a caller bug; the later one is skipped rather than
            // corrupting the message.
            if op.span.start < at {
                debug_assert!(false, "overlapping splices");
                continue;
            }
            out.put_slice(&src[at..op.span.start]);
            out.put_slice(&op.with);
            at = op.span.end;
        }
        out.put_slice(&src[at..msg.body.end]);
        out.freeze()
    }
}

// ---- scanning helpers -------------------------------------------------------------------

/// RFC 3261 `token` characters.
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Finds the empty line ending the head, from `from`. Returns (start of the empty line, start
/// of the body). Accepts CRLF and bare LF line ends.
fn find_head_end(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while let Some(off) = memchr::memchr(b'\n', &b[i..]) {
        let nl = i + off;
        let next = nl + 1;
        if next < b.len() && b[next] == b'\n' {
            return Some((next, next + 1));
        }
        if next + 1 < b.len() && b[next] == b'\r' && b[next + 1] == b'\n' {
            return Some((next, next + 2));
        }
        i = next;
    }
    None
}

/// The end of the line starting at `at` (before CR LF or LF) and the start of the next line,
/// bounded by `limit`.
fn line_end(b: &[u8], at: usize, limit: usize) -> (usize, usize) {
    match memchr::memchr(b'\n', &b[at..limit]) {
        Some(off) => {
            let nl = at + off;
            let end = if nl > at && b[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            (end, nl + 1)
        }
        None => (limit, limit),
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn ltrim(b: &[u8], mut s: usize, e: usize) -> usize {
    while s < e && is_ws(b[s]) {
        s += 1;
    }
    s
}

fn rtrim(b: &[u8], s: usize, mut e: usize) -> usize {
    while e > s && is_ws(b[e - 1]) {
        e -= 1;
    }
    e
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let s = ltrim(b, 0, b.len());
    let e = rtrim(b, s, b.len());
    &b[s..e]
}

/// A decimal number of at most 10 digits that fits in usize (no sign, no spaces).
pub(crate) fn parse_decimal(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as usize)
    })
}

fn parse_start_line(line: &[u8], offset: usize) -> Result<StartLine, ParseError> {
    if line.starts_with(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', line).ok_or(ParseError::StartLine("no status code"))?;
        if &line[..sp] != b"SIP/2.0" {
            return Err(ParseError::Version);
        }
        let rest = &line[sp + 1..];
        if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
            return Err(ParseError::StartLine("status code is not three digits"));
        }
        if rest.len() > 3 && rest[3] != b' ' {
            return Err(ParseError::StartLine("status code is not three digits"));
        }
        let status =
            (rest[0] - b'0') as u16 * 100 + (rest[1] - b'0') as u16 * 10 + (rest[2] - b'0') as u16;
        if !(100..=699).contains(&status) {
            return Err(ParseError::StartLine("status code out of range"));
        }
        let reason_start = (offset + sp + 1 + 4).min(offset + line.len());
        return Ok(StartLine::Response {
            status,
            reason: Span::new(reason_start, offset + line.len()),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces only.
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::StartLine("no Request-URI"))?;
    let method = Method::parse(&line[..sp1]).ok_or(ParseError::StartLine("bad method"))?;
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest).ok_or(ParseError::StartLine("no SIP version"))?;
    let uri = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if uri.is_empty() {
        return Err(ParseError::StartLine("extra space before the Request-URI"));
    }
    if version.contains(&b' ') || version.contains(&b'\t') {
        return Err(ParseError::StartLine("space in or after the SIP version"));
    }
    if !version.starts_with(b"SIP/") || version.len() < 5 {
        return Err(ParseError::StartLine("no SIP version"));
    }
    if version != b"SIP/2.0" {
        return Err(ParseError::Version);
    }
    if uri.contains(&b'\t') || uri.first() == Some(&b'<') {
        return Err(ParseError::StartLine("malformed Request-URI"));
    }
    let uri_start = offset + sp1 + 1;
    Ok(StartLine::Request {
        method,
        uri: Span::new(uri_start, uri_start + sp2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &[u8] = b"REGISTER sip:127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:1000@127.0.0.1>\r\n\
From: <sip:1000@127.0.0.1>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:1000@127.0.0.1:5080>;expires=600, <sip:1000@10.0.0.1>\r\n\
Content-Length: 0\r\n\r\n";

    fn parse(b: &[u8]) -> Result<Message, ParseError> {
        Message::parse_datagram(Bytes::copy_from_slice(b), &Limits::default())
    }

    #[test]
    fn parses_register() {
        let m = parse(REGISTER).unwrap();
        assert_eq!(m.method(), Some(&Method::Register));
        assert_eq!(m.request_uri(), Some("sip:127.0.0.1"));
        assert_eq!(m.call_id().unwrap(), "843817637684230@998sdasdh09");
        assert_eq!(m.cseq().unwrap().seq, 1826);
        assert_eq!(m.contacts().unwrap().len(), 2);
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        m.validate_request().unwrap();
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert!(m.body().is_empty());
    }

    #[test]
    fn splices_without_rerendering() {
        let m = parse(REGISTER).unwrap();
        let mut e = m.edit();
        e.prepend_header("Via: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKnew");
        let mf = *m.headers_named(HeaderName::MaxForwards).next().unwrap();
        e.replace_value(&mf, "69");
        let ua = *m.headers_named(HeaderName::Contact).next().unwrap();
        e.remove_header(&ua);
        let out = e.finish();
        let m2 = parse(&out).unwrap();
        assert_eq!(m2.top_via().unwrap().branch(), Some("z9hG4bKnew"));
        assert_eq!(m2.values(HeaderName::Via).count(), 2);
        assert_eq!(m2.max_forwards().unwrap(), Some(69));
        assert!(m2.contacts().unwrap().is_empty());
        m2.validate_request().unwrap();
    }

    #[test]
    fn body_replacement_fixes_content_length() {
        let m = parse(REGISTER).unwrap();
        let mut e = m.edit();
        e.set_body(Bytes::from_static(b"v=0\r\n"));
        let m2 = parse(&e.finish()).unwrap();
        assert_eq!(m2.body(), b"v=0\r\n");
        assert_eq!(m2.content_length().unwrap(), Some(5));
    }

    #[test]
    fn stream_framing() {
        let lim = Limits::default();
        assert_eq!(
            frame_stream(b"\r\n\r\nREG", &lim).unwrap(),
            Frame::KeepAlive { len: 4, ping: true }
        );
        assert_eq!(frame_stream(b"\r\n", &lim).unwrap(), Frame::Incomplete);
        assert_eq!(
            frame_stream(&REGISTER[..50], &lim).unwrap(),
            Frame::Incomplete
        );
        let mut two = REGISTER.to_vec();
        two.extend_from_slice(REGISTER);
        assert_eq!(
            frame_stream(&two, &lim).unwrap(),
            Frame::Message {
                len: REGISTER.len()
            }
        );
        let bad = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n";
        assert!(frame_stream(bad, &lim).is_err());
        let huge = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999\r\n\r\n";
        assert!(matches!(
            frame_stream(huge, &lim),
            Err(ParseError::TooLarge(_))
        ));
    }

    #[test]
    fn limits() {
        let lim = Limits {
            max_message: 65_535,
            max_headers: 5,
        };
        let err = Message::parse_datagram(Bytes::from_static(REGISTER), &lim).unwrap_err();
        assert_eq!(err, ParseError::TooManyHeaders(5));
        assert_eq!(err.status(), 400);
        let lim = Limits {
            max_message: 100,
            max_headers: 50,
        };
        let err = Message::parse_datagram(Bytes::from_static(REGISTER), &lim).unwrap_err();
        assert_eq!(err.status(), 513);
    }

    #[test]
    fn lf_only_line_ends() {
        let text = String::from_utf8(REGISTER.to_vec())
            .unwrap()
            .replace("\r\n", "\n");
        let m = parse(text.as_bytes()).unwrap();
        m.validate_request().unwrap();
        assert_eq!(m.call_id().unwrap(), "843817637684230@998sdasdh09");
    }

    #[test]
    fn truncated_messages_never_panic() {
        for n in 0..REGISTER.len() {
            let _ = parse(&REGISTER[..n]).map(|m| m.validate_request());
            let _ = frame_stream(&REGISTER[..n], &Limits::default());
        }
    }
}
