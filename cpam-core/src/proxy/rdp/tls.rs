//! The certificate the proxy shows RDP clients, and its public key, which
//! CredSSP binds (the client encrypts it under the NLA session key).

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::error::{Error, ErrorKind, Result};

/// The proxy's TLS side towards clients.
#[derive(Clone)]
pub struct ProxyTls {
    pub(super) acceptor: TlsAcceptor,
    /// The certificate's subjectPublicKey bits, as CredSSP wants them.
    pub(super) public_key: Vec<u8>,
}

impl std::fmt::Debug for ProxyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyTls").finish_non_exhaustive()
    }
}

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidArgument, format!("{what}: {e}"))
}

impl ProxyTls {
    /// From a PEM certificate (chain, leaf first) and its PEM private key:
    /// the console's, so clients that trust it trust both.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad("the RDP certificate", e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("the RDP key", e))?;
        Self::from_der(certs, key)
    }

    /// A new self-signed certificate for `localhost` (a server without a
    /// data dir; clients must be told to accept it).
    pub fn self_signed() -> Result<Self> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .map_err(|e| Error::new(ErrorKind::Internal, format!("RDP certificate: {e}")))?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        Self::from_der(vec![ck.cert.der().clone()], key)
    }

    fn from_der(
        certs: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Self> {
        use x509_cert::der::Decode as _;
        let leaf = certs
            .first()
            .ok_or_else(|| Error::invalid("the RDP certificate file holds no certificate"))?;
        let cert =
            x509_cert::Certificate::from_der(leaf).map_err(|e| bad("the RDP certificate", e))?;
        let public_key = cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
            .to_vec();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("RDP TLS", e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad("the RDP certificate and key", e))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            public_key,
        })
    }
}

/// Makes ring the process's default rustls provider unless one is set.
/// IronRDP's client legs (`ironrdp_tls::upgrade*`) build their TLS
/// configuration from the process default, which rustls cannot pick when
/// two providers are compiled in (the object store's HTTP client brings
/// aws-lc-rs): call this before them. An integrator's own default stays.
pub fn ensure_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
