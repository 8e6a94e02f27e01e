//! The emulator's own CA (made once, kept in the state directory) and its https certificate for
//! `localhost`, `127.0.0.1` and `::1` (made again at every start, signed by that CA).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::EmulatorError;

pub(crate) const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
const TLS_FILE: &str = "tls.pem";
const TLS_KEY_FILE: &str = "tls-key.pem";

pub(crate) struct TlsMaterial {
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub server_config: rustls::ServerConfig,
}

fn ca_params() -> Result<CertificateParams, EmulatorError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "vault-emulator local CA");
    dn.push(DnType::OrganizationName, "vault-emulator");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

fn tls_err(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Tls(e.to_string())
}

fn read(path: &Path) -> Result<Option<String>, EmulatorError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EmulatorError::Io {
            action: "cannot read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a file readable by its owner only when it holds a key.
pub(crate) fn write(path: &Path, contents: &str, private: bool) -> Result<(), EmulatorError> {
    let io = |source| EmulatorError::Io {
        action: "cannot write",
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(io)?;
    if !private {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
                .map_err(io)?;
        }
    }
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Loads (or makes) the CA and makes the https certificate for `extra_ip` besides the loopback
/// names.
pub(crate) fn setup(
    state_dir: &Path,
    extra_ip: Option<IpAddr>,
) -> Result<TlsMaterial, EmulatorError> {
    let ca_path = state_dir.join(CA_FILE);
    let ca_key_path = state_dir.join(CA_KEY_FILE);
    let (ca_key, ca_pem) = match (read(&ca_key_path)?, read(&ca_path)?) {
        (Some(key_pem), Some(ca_pem)) => (KeyPair::from_pem(&key_pem).map_err(tls_err)?, ca_pem),
        _ => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(tls_err)?;
            let cert = ca_params()?.self_signed(&key).map_err(tls_err)?;
            write(&ca_key_path, &key.serialize_pem(), true)?;
            write(&ca_path, &cert.pem(), false)?;
            (key, cert.pem())
        }
    };
    // The issuer as rcgen needs it: same name and key as the stored CA certificate.
    let issuer = ca_params()?.self_signed(&ca_key).map_err(tls_err)?;

    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).map_err(tls_err)?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let mut ips: Vec<IpAddr> = vec![
        "127.0.0.1".parse().map_err(tls_err)?,
        "::1".parse().map_err(tls_err)?,
    ];
    if let Some(ip) = extra_ip.filter(|ip| !ip.is_unspecified() && !ips.contains(ip)) {
        ips.push(ip);
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    params.use_authority_key_identifier_extension = true;
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(tls_err)?;
    let server_cert = params
        .signed_by(&server_key, &issuer, &ca_key)
        .map_err(tls_err)?;
    write(
        &state_dir.join(TLS_KEY_FILE),
        &server_key.serialize_pem(),
        true,
    )?;
    write(&state_dir.join(TLS_FILE), &server_cert.pem(), false)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .map_err(tls_err)?;
    Ok(TlsMaterial {
        ca_file: ca_path,
        ca_pem,
        server_config,
    })
}
