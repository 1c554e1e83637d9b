//! TLS for Postgres connections: a rustls connector for tokio-postgres with libpq's `sslmode`
//! semantics.
//!
//! | sslmode | TLS | certificate chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | never | | |
//! | `prefer` (default) | when the server offers it, else plain; a failed handshake retries plain | no | no |
//! | `require` | always | only when `sslrootcert` is given (then like `verify-ca`) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! The roots are `sslrootcert` (a PEM file, possibly several certificates), `system` for the
//! Mozilla roots bundled with crmflow (webpki-roots), or libpq's default
//! `~/.postgresql/root.crt`. `sslcert` + `sslkey` (PEM) are the client certificate (mTLS).
//! The crypto provider is ring, the one reqwest already brings (no aws-lc build).
//! Channel binding is not offered (`SCRAM-SHA-256` without `-PLUS`, as libpq's
//! `channel_binding=prefer` does against a server without it).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::config::{PostgresConfig, SslMode};

/// A TLS set-up problem (a file that cannot be read or parsed), named for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsSetupError(pub String);

/// The handshake failed (unknown CA, host name mismatch, protocol error). Kept as its own type
/// so callers can tell it from other connection errors (`prefer` retries without TLS; it is
/// never retriable).
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {server} failed: {reason}")]
pub struct HandshakeError {
    server: String,
    /// rustls's reason (kept as text, so error chains do not print it twice).
    reason: String,
}

/// A tokio-postgres TLS connector built once from the configuration and cloned per connection.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeRustls")
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_err(key: &str, path: &Path, e: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError(format!("postgres.{key} {}: {e}", path.display()))
}

/// The roots for `sslrootcert`: a PEM file, `system`, or libpq's default file.
fn roots(p: &PostgresConfig) -> Result<Option<RootCertStore>, TlsSetupError> {
    let path = match &p.sslrootcert {
        Some(path) if path.as_os_str() == "system" => {
            let mut store = RootCertStore::empty();
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            return Ok(Some(store));
        }
        Some(path) => path.clone(),
        None => match std::env::var_os("HOME") {
            Some(home) => {
                let default = PathBuf::from(home).join(".postgresql/root.crt");
                if !default.exists() {
                    return Ok(None);
                }
                default
            }
            None => return Ok(None),
        },
    };
    let mut store = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(&path).map_err(|e| read_err("sslrootcert", &path, e))?;
    for cert in certs {
        let cert = cert.map_err(|e| read_err("sslrootcert", &path, e))?;
        store
            .add(cert)
            .map_err(|e| read_err("sslrootcert", &path, e))?;
    }
    if store.is_empty() {
        return Err(read_err(
            "sslrootcert",
            &path,
            "no PEM certificate in the file",
        ));
    }
    Ok(Some(store))
}

impl MakeRustls {
    /// The connector for `p.sslmode`; `None` for `disable`.
    pub fn new(p: &PostgresConfig) -> Result<Option<Self>, TlsSetupError> {
        let mode = p.sslmode;
        if mode == SslMode::Disable {
            return Ok(None);
        }
        let roots = match mode {
            SslMode::Prefer => None,
            _ => roots(p)?,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(TlsSetupError(format!(
                    "postgres.sslmode = {} needs postgres.sslrootcert (a CA file, or `system`)",
                    mode.as_str()
                )))
            }
            (SslMode::Disable | SslMode::Prefer | SslMode::Require, None) => {
                Arc::new(NoVerify(provider()))
            }
            (_, Some(roots)) => {
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsSetupError(format!("postgres.sslrootcert: {e}")))?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    // require with a root certificate behaves like verify-ca (libpq).
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(format!("postgres TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&p.sslcert, &p.sslkey) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| read_err("sslcert", cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| read_err("sslcert", cert, e))?;
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| read_err("sslkey", key, e))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| TlsSetupError(format!("postgres.sslcert/sslkey: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsSetupError(
                    "postgres.sslcert and postgres.sslkey go together: set both or neither".into(),
                ))
            }
        };
        Ok(Some(Self {
            config: Arc::new(config),
        }))
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = TlsSetupError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, TlsSetupError> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| TlsSetupError(format!("postgres host {domain:?}: {e}")))?;
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One connection's handshake.
pub struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, HandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let server = self.name.to_str().into_owned();
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(|s| RustlsStream(Box::new(s)))
                .map_err(|e| HandshakeError {
                    server,
                    reason: e.to_string(),
                })
        })
    }
}

/// A TLS session to the server.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// `prefer`, and `require` without a root certificate: encrypt, check nothing (libpq's
/// behaviour). Handshake signatures are still verified, so the session key is the server's.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
