//! A blocking SIP-over-TLS client for the tests (rustls over a std `TcpStream`). It accepts
//! whatever certificate the switch presents, as a phone does before the operator pins the
//! fingerprint, and records that certificate so tests can compare it with the switch's log
//! and files.

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

use super::sip::{recv_final_with, stream_recv, Msg, TimedRead};

/// Accepts any certificate (the test checks it after the handshake), but still checks the
/// handshake signatures with the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub type Stream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// One TLS connection to the switch, handshake done.
pub struct TlsClient {
    stream: RefCell<Stream>,
    buf: RefCell<Vec<u8>>,
    pub server: SocketAddr,
    pub local: SocketAddr,
    /// SHA-256 of the certificate the switch presented, `AB:CD:…`.
    pub fingerprint: String,
}

/// A TLS stream to `server` (any certificate accepted, see [`AnyCertificate`]) with its
/// handshake done, and the fingerprint of the certificate the switch presented.
pub fn connect_stream(server: SocketAddr) -> std::io::Result<(Stream, String)> {
    connect_stream_from(None, server)
}

/// Like [`connect_stream`], from the local address `source` (another 127.x.y.z for the guard
/// tests) when given.
pub fn connect_stream_from(
    source: Option<std::net::IpAddr>,
    server: SocketAddr,
) -> std::io::Result<(Stream, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = ServerName::IpAddress(server.ip().into());
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = match source {
        None => TcpStream::connect_timeout(&server, Duration::from_secs(2))?,
        Some(ip) => {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(server),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            sock.bind(&SocketAddr::new(ip, 0).into())?;
            sock.connect_timeout(&server.into(), Duration::from_secs(2))?;
            sock.into()
        }
    };
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    let leaf = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| std::io::Error::other("the switch presented no certificate"))?;
    let fingerprint = fingerprint(leaf.as_ref());
    Ok((stream, fingerprint))
}

impl TlsClient {
    pub fn connect(server: SocketAddr) -> std::io::Result<TlsClient> {
        let (stream, fingerprint) = connect_stream(server)?;
        let local = stream.sock.local_addr()?;
        Ok(TlsClient {
            stream: RefCell::new(stream),
            buf: RefCell::new(Vec::new()),
            server,
            local,
            fingerprint,
        })
    }
}

impl TlsClient {
    /// Writes all of `data`; false when the connection is gone.
    pub fn send(&self, data: &[u8]) -> bool {
        let mut s = self.stream.borrow_mut();
        s.write_all(data).is_ok() && s.flush().is_ok()
    }

    /// The next framed message within `wait` (None on timeout or closed connection).
    pub fn recv(&self, wait: Duration) -> Option<Msg> {
        stream_recv(&self.stream, &self.buf, wait)
    }

    /// The next final response within `wait`.
    pub fn recv_final(&self, wait: Duration) -> Option<Msg> {
        recv_final_with(wait, |left| self.recv(left))
    }
}

impl TimedRead for Stream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }
}

/// `AB:CD:…` of the SHA-256 of `der`, as the switch logs it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// The fingerprint of the first certificate in a PEM file (e.g. `<db>.tls.crt`).
pub fn pem_fingerprint(path: &std::path::Path) -> String {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("{} is not a PEM certificate: {e}", path.display()));
    fingerprint(der.as_ref())
}
