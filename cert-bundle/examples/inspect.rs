//! Prints what a certificate file holds: the leaf's SHA-256 thumbprint and the chain's subjects,
//! leaf first. Never prints the key.
//!
//! ```text
//! cargo run -p cert-bundle --example inspect -- site.pfx [PASSWORD]
//! cargo run -p cert-bundle --example inspect -- bundle.pem
//! ```
//!
//! A file that starts with `-----BEGIN` is read as PEM, anything else as PKCS#12. With no
//! password, a PKCS#12 file is opened with the empty password, as Key Vault exports it.

use std::process::ExitCode;

use cert_bundle::CertificateBundle;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: inspect FILE [PASSWORD]");
        return ExitCode::from(2);
    };
    let password = args.next();

    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let is_pem = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|start| bytes[start..].starts_with(b"-----BEGIN"));
    let bundle = if is_pem {
        CertificateBundle::from_pem(&bytes)
    } else {
        CertificateBundle::from_pfx(&bytes, password.as_deref())
    };
    let bundle = match bundle {
        Ok(bundle) => bundle,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };

    println!("thumbprint (SHA-256): {}", bundle.thumbprint());
    for (i, cert) in bundle.chain().iter().enumerate() {
        let role = if i == 0 { "leaf" } else { "chain" };
        match x509_parser::parse_x509_certificate(cert) {
            Ok((_, x509)) => println!(
                "[{i}] {role}: subject \"{}\", issuer \"{}\", not after {}",
                x509.subject(),
                x509.issuer(),
                x509.validity().not_after
            ),
            Err(e) => println!("[{i}] {role}: unparsable certificate: {e}"),
        }
    }
    let key_kind = match bundle.private_key() {
        rustls_pki_types::PrivateKeyDer::Pkcs1(_) => "PKCS#1 RSA",
        rustls_pki_types::PrivateKeyDer::Sec1(_) => "SEC1 EC",
        rustls_pki_types::PrivateKeyDer::Pkcs8(_) => "PKCS#8",
        _ => "other",
    };
    println!("private key: {key_kind} (not shown)");
    ExitCode::SUCCESS
}
