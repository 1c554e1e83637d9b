//! TLS for the simulator: a CA generated at start (rcgen) signs a server certificate for `localhost` and
//! `127.0.0.1`; clients trust the CA's PEM ([`super::SimHandle::ca_pem`], or `--ca-out FILE`). One accept
//! loop serves HTTP/1.1 (REST, SOAP, OAuth) and HTTP/2 (gRPC, selected by ALPN) on the same port.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The generated certificates.
pub struct Certs {
    /// CA certificate, PEM: what clients trust.
    pub ca_pem: String,
    /// Server certificate chain (leaf, CA).
    pub chain: Vec<CertificateDer<'static>>,
    /// Server key.
    pub key: PrivateKeyDer<'static>,
}

/// Generates a CA and a server certificate for localhost / 127.0.0.1 / ::1.
pub fn generate() -> Result<Certs, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, "crmflow Salesforce simulator CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "crmflow Salesforce simulator");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok(Certs {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    })
}

/// Server TLS settings announcing `h2` and `http/1.1`.
pub fn server_config(certs: &Certs) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs.chain.clone(), certs.key.clone_key())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts TLS connections and serves `app` on each until `stop` turns true, within
/// [`crmflow_httpd::Limits`]: the TLS handshake and then each request head must arrive within the
/// header read timeout, at most `max_connections` at once.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let limits = crmflow_httpd::Limits::default();
    let app = crmflow_httpd::bounded(app, &limits);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(%e, "salesforce simulator accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp));
            let tls = match handshake.await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            crmflow_httpd::serve_connection(tls, app, &limits, stop).await;
            drop(permit);
        });
    }
}
