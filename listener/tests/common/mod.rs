//! Test PKI made on the fly with rcgen, a real rustls server on `127.0.0.1:0`, and a real rustls
//! client.
#![allow(dead_code)] // Each test file uses its own part of this module.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use cert_bundle::{CertificateBundle, Thumbprint};
use listener::{server_config, validate, SniResolver, ValidatedCertificate};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Certificate parameters for a leaf with these DNS names, the first one also its CN.
pub fn params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("valid names");
    if let Some(first) = names.first() {
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    params
}

/// A certificate authority: a root, or an intermediate below one.
pub struct Ca {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn root(name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let cert = ca_params(name).self_signed(&key).expect("root");
        Self { cert, key }
    }

    pub fn intermediate(&self, name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let cert = self.sign(ca_params(name), &key);
        Self { cert, key }
    }

    pub fn sign(&self, params: CertificateParams, key: &KeyPair) -> Certificate {
        params
            .signed_by(key, &self.cert, &self.key)
            .expect("signed")
    }

    /// A P-256 leaf for `names`, issued by this CA, as a bundle of the leaf alone.
    pub fn site(&self, names: &[&str]) -> CertificateBundle {
        let key = KeyPair::generate().expect("key");
        let leaf = self.sign(params(names), &key);
        bundle(&[&leaf], &key)
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A bundle of these certificates (leaf first) and `key`.
pub fn bundle(chain: &[&Certificate], key: &KeyPair) -> CertificateBundle {
    with_key(
        chain,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// A bundle of these certificates and any private key, matching or not.
pub fn with_key(chain: &[&Certificate], key: PrivateKeyDer<'static>) -> CertificateBundle {
    CertificateBundle::new(chain.iter().map(|c| c.der().clone()).collect(), key).expect("bundle")
}

/// A bundle checked in under `tests/data` (see `tests/data/regenerate.sh`).
pub fn data(name: &str) -> CertificateBundle {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.pem"));
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    CertificateBundle::from_pem(&pem).expect("test data bundle")
}

/// `bundle` through the gate, with no hostnames, now.
pub fn validated(bundle: &CertificateBundle) -> ValidatedCertificate {
    validate(bundle, &[], SystemTime::now()).expect("a valid certificate")
}

/// Starts a TLS echo server with the crate's policy and `resolver`; returns its address.
pub async fn serve(resolver: Arc<SniResolver>) -> SocketAddr {
    let config = server_config(resolver).expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buffer = [0u8; 1024];
                while let Ok(n @ 1..) = tls.read(&mut buffer).await {
                    if tls.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                    let _ = tls.flush().await;
                }
            });
        }
    });
    addr
}

/// A rustls client that trusts one CA. Clones share the configuration, hence the session
/// cache: that is how a browser resumes.
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
}

impl Client {
    pub fn trusting(ca: &Ca) -> Self {
        Self::build(ca, &[&rustls::version::TLS13, &rustls::version::TLS12])
    }

    pub fn tls12_only(ca: &Ca) -> Self {
        Self::build(ca, &[&rustls::version::TLS12])
    }

    pub fn tls13_only(ca: &Ca) -> Self {
        Self::build(ca, &[&rustls::version::TLS13])
    }

    fn build(ca: &Ca, versions: &[&'static rustls::SupportedProtocolVersion]) -> Self {
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert.der().clone()).expect("root");
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        Self {
            config: Arc::new(config),
        }
    }

    /// Offers these ALPN protocols.
    pub fn offering(mut self, protocols: &[&str]) -> Self {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self.config = Arc::new(config);
        self
    }

    /// Sends no SNI (the certificate is still verified for the name given to `connect`).
    pub fn without_sni(mut self) -> Self {
        let mut config = (*self.config).clone();
        config.enable_sni = false;
        self.config = Arc::new(config);
        self
    }

    /// Connects to `addr` asking for (and verifying the certificate against) `name`.
    pub async fn connect(&self, addr: SocketAddr, name: &str) -> io::Result<Connection> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        let tls = TlsConnector::from(Arc::clone(&self.config))
            .connect(name, tcp)
            .await?;
        Ok(Connection { tls })
    }
}

/// A client connection whose handshake completed.
pub struct Connection {
    tls: TlsStream<TcpStream>,
}

impl Connection {
    /// The thumbprint of the certificate the server presented.
    pub fn thumbprint(&self) -> Thumbprint {
        let certs = self
            .tls
            .get_ref()
            .1
            .peer_certificates()
            .expect("peer certificates");
        Thumbprint::of(&certs[0])
    }

    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.tls.get_ref().1.handshake_kind()
    }

    pub fn version(&self) -> Option<ProtocolVersion> {
        self.tls.get_ref().1.protocol_version()
    }

    pub fn alpn(&self) -> Option<String> {
        self.tls
            .get_ref()
            .1
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// Sends `message` and reads the echo: proves the connection carries data. It also makes
    /// the client read the TLS 1.3 session tickets the server sent after the handshake.
    pub async fn echo(&mut self, message: &str) -> io::Result<()> {
        self.tls.write_all(message.as_bytes()).await?;
        self.tls.flush().await?;
        let mut back = vec![0u8; message.len()];
        self.tls.read_exact(&mut back).await?;
        assert_eq!(back, message.as_bytes(), "echoed data");
        Ok(())
    }
}
