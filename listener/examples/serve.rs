//! A small HTTPS server built on the `listener` crate alone: one listener whose certificate,
//! issued by a throwaway CA made at start, is replaced by a fresh one every 30 seconds without
//! dropping a connection.
//!
//! ```text
//! cargo run -p listener --example serve [-- 127.0.0.1:8443]
//! ```
//!
//! It prints a `curl` line that trusts the throwaway CA. Run it twice, half a minute apart, and
//! the thumbprint in the answer changes.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cert_bundle::CertificateBundle;
use listener::{server_config, ListenerCertificate, SniResolver};
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const HOSTNAME: &str = "localhost";
const ROTATE_EVERY: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8443".to_owned());

    // A CA for this run only; clients trust it through the file written here.
    let ca = Ca::new()?;
    let ca_file = std::env::temp_dir().join("listener-serve-ca.pem");
    std::fs::write(&ca_file, ca.cert.pem())?;

    // One listener and its first certificate; the resolver and the TLS config are built once.
    let site = Arc::new(ListenerCertificate::new("site", [HOSTNAME]));
    site.validate_and_install(&ca.issue()?, SystemTime::now())?;
    let resolver = Arc::new(SniResolver::new([Arc::clone(&site)])?);
    let mut config = server_config(resolver)?;
    // This example speaks HTTP/1.1 only, so it must not offer h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let tcp = TcpListener::bind(&bind).await?;
    let port = tcp.local_addr()?.port();
    println!("serving https://{HOSTNAME}:{port}/");
    println!(
        "try: curl --cacert {} https://{HOSTNAME}:{port}/",
        ca_file.display()
    );
    report(&site);

    // Rotation: validate a new certificate, swap it in, carry on serving.
    let rotating = Arc::clone(&site);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ROTATE_EVERY).await;
            let result = ca.issue().map_err(|e| e.to_string()).and_then(|bundle| {
                rotating
                    .validate_and_install(&bundle, SystemTime::now())
                    .map_err(|e| e.to_string())
            });
            match result {
                Ok(_) => report(&rotating),
                Err(e) => eprintln!("kept the current certificate: {e}"),
            }
        }
    });

    loop {
        let (stream, peer) = tcp.accept().await?;
        let acceptor = acceptor.clone();
        let site = Arc::clone(&site);
        tokio::spawn(async move {
            let mut tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(e) => return eprintln!("{peer}: handshake failed: {e}"),
            };
            // Read the request head; its content does not matter here.
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                match tls.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let body = match site.current() {
                Some(current) => format!(
                    "hello from {} (certificate {}, {})\n",
                    current.subject(),
                    current.thumbprint(),
                    current.key()
                ),
                None => "no certificate\n".to_owned(),
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(response.as_bytes()).await;
            let _ = tls.shutdown().await;
        });
    }
}

fn report(site: &ListenerCertificate) {
    if let Some(current) = site.current() {
        println!(
            "listener {} serves {} ({}), valid until unix time {}",
            site.name(),
            current.thumbprint(),
            current.subject(),
            current.not_after()
        );
    }
}

/// The throwaway CA.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "listener example CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// A fresh ECDSA P-256 certificate for [`HOSTNAME`].
    fn issue(&self) -> Result<CertificateBundle, Box<dyn Error>> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![HOSTNAME.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, HOSTNAME);
        let leaf = params.signed_by(&key, &self.cert, &self.key)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(CertificateBundle::new(vec![leaf.der().clone()], key)?)
    }
}
