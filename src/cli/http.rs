//! A tiny blocking HTTP/1.1 client (GET and POST) for the switch's admin API on loopback: one
//! request per connection (`Connection: close`), 5 s timeouts, `Content-Length`, chunked or
//! read-to-end bodies. Not a general HTTP client. `admin_get` and `admin_post` add
//! the operator's sentences for an unreachable switch.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HttpError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} did not answer in time: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} sent a malformed HTTP response: {reason}")]
    Malformed { addr: SocketAddr, reason: String },
}

/// An HTTP response: status code and body.
#[derive(Debug)]
pub(super) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `GET path` from `addr`.
pub(super) fn get(addr: SocketAddr, path: &str) -> Result<Response, HttpError> {
    request(addr, "GET", path, None)
}

/// `POST path` to `addr` with a JSON body (`None`: an empty body).
pub(super) fn post(
    addr: SocketAddr,
    path: &str,
    json: Option<&str>,
) -> Result<Response, HttpError> {
    request(addr, "POST", path, Some(json.unwrap_or_default()))
}

/// `GET path` from the admin API at `admin`; errors are the operator's sentences
/// (`cannot reach the switch's admin API at …`).
pub(super) fn admin_get(admin: SocketAddr, path: &str) -> anyhow::Result<Response> {
    in_sentences(admin, get(admin, path))
}

/// GETs a JSON list from the admin API. With `raw`, the body is printed as it came and
/// `None` returned (for `--json`); otherwise the list is parsed. `what` names the list in the
/// error sentence ("a call list").
pub(super) fn admin_list<T: serde::de::DeserializeOwned>(
    admin: SocketAddr,
    path: &str,
    raw: bool,
    what: &str,
) -> anyhow::Result<Option<Vec<T>>> {
    let response = admin_get(admin, path)?;
    let body = String::from_utf8_lossy(&response.body);
    if !(200..300).contains(&response.status) {
        anyhow::bail!(
            "the switch's admin API at {admin} answered {}: {}",
            response.status,
            body.trim()
        );
    }
    if raw {
        let mut out = std::io::stdout().lock();
        out.write_all(body.as_bytes())?;
        if !body.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        return Ok(None);
    }
    serde_json::from_str(&body).map(Some).map_err(|e| {
        anyhow::anyhow!("the switch's admin API at {admin} sent something other than {what}: {e}")
    })
}

/// `POST path` (empty body) to the admin API at `admin`; errors as [`admin_get`].
pub(super) fn admin_post(admin: SocketAddr, path: &str) -> anyhow::Result<Response> {
    in_sentences(admin, post(admin, path, None))
}

/// `POST path` with a JSON body to the admin API at `admin`; errors as [`admin_get`].
pub(super) fn admin_post_json(
    admin: SocketAddr,
    path: &str,
    json: &str,
) -> anyhow::Result<Response> {
    in_sentences(admin, post(admin, path, Some(json)))
}

fn in_sentences(
    admin: SocketAddr,
    result: Result<Response, HttpError>,
) -> anyhow::Result<Response> {
    result.map_err(|e| match e {
        HttpError::Connect { .. } => anyhow::anyhow!(
            "cannot reach the switch's admin API at {admin} (is `tambun serve` running?)"
        ),
        other => anyhow::anyhow!("the switch's admin API failed: {other}"),
    })
}

/// One request; `body` (sent as JSON) only for methods that carry one.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Response, HttpError> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|source| HttpError::Connect { addr, source })?;
    let io = |source| HttpError::Io { addr, source };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: tambun-cli\r\n\
         Accept: application/json\r\nConnection: close\r\n"
    );
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(io)?;
    parse_response(&raw).map_err(|reason| HttpError::Malformed { addr, reason })
}

/// Parses a whole response read until the server closed the connection.
fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line '{status_line}'"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line '{status_line}'"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = content_length {
        rest.get(..len)
            .ok_or("body shorter than Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = data.get(..size).ok_or("truncated chunk")?;
        body.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[]"[..]));
    }

    #[test]
    fn chunked_body() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"[1,2]");
    }

    #[test]
    fn read_to_end_body_and_errors() {
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope"[..]));
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"SIP/2.0 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn get_over_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                .unwrap();
            req
        });
        let r = get(addr, "/api/registrations?opd=setda").unwrap();
        assert_eq!(r.status, 200);
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /api/registrations?opd=setda HTTP/1.1\r\n"));
        assert!(req.contains("Connection: close\r\n"));
    }

    #[test]
    fn post_over_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"opds\": 3}")
                .unwrap();
            req
        });
        let r = post(addr, "/api/dialplan/reload", Some("{}")).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{\"opds\": 3}"[..]));
        let req = server.join().unwrap();
        assert!(
            req.starts_with("POST /api/dialplan/reload HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("Content-Length: 2\r\n\r\n{}"), "{req}");
    }
}
