//! TLS to PostgreSQL, with libpq's meaning of the URL's `sslmode`:
//!
//! - `disable`: never;
//! - `prefer` (the default) and `require`: encrypt (`require`: or fail),
//!   without checking the server's certificate, as libpq does;
//! - `verify-full` (and `verify-ca`, taken as `verify-full`): encrypt and
//!   check the certificate and the host name against `sslrootcert` (a PEM
//!   file) if given, else the public web roots (managed PostgreSQL).
//!
//! The client library knows only the first three, so `verify-*` and
//! `sslrootcert` are taken out of the URL here.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// `url` as the client library takes it, and the TLS connector it asks for.
pub fn connector(url: &str) -> Result<(String, MakeRustlsConnect), StoreError> {
    let bad = |what: String| StoreError::Unusable(format!("storage.url: {what}"));
    let mut parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let mut verify = false;
    let mut root: Option<String> = None;
    let mut kept = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match (key.as_ref(), value.as_ref()) {
            ("sslmode", "verify-full" | "verify-ca") => {
                verify = true;
                kept.push(("sslmode".to_string(), "require".to_string()));
            }
            ("sslrootcert", path) => root = Some(path.to_string()),
            (key, value) => kept.push((key.to_string(), value.to_string())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let config = if verify {
        let mut roots = RootCertStore::empty();
        match &root {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| bad(format!("sslrootcert {path}: {e}")))?;
                for cert in certs {
                    roots.add(cert).map_err(|e| bad(format!("sslrootcert {path}: {e}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth()
    };
    Ok((parsed.to_string(), MakeRustlsConnect::new(config)))
}

/// libpq's `prefer` and `require`: the connection is encrypted, the
/// certificate is not checked (the handshake's signatures still are).
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
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
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_and_root_leave_the_url() {
        let missing = connector("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent&x=1")
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("sslrootcert /nonexistent"), "{missing}");
        let (url, _) = connector("postgres://u:p@h:5433/db?sslmode=verify-ca&application_name=a").unwrap();
        assert_eq!(url, "postgres://u:p@h:5433/db?sslmode=require&application_name=a");
        let (url, _) = connector("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=disable");
        let (url, _) = connector("postgresql://u@h/db").unwrap();
        assert_eq!(url, "postgresql://u@h/db");
    }
}
