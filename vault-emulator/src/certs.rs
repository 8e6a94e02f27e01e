//! Certificate material: key generation, self-signed certificates from a policy, the secret value
//! of a certificate (password-less PKCS#12 or PEM, as Key Vault writes them) and the policy Key
//! Vault synthesises for an imported certificate.

use std::net::IpAddr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha1::{Digest, Sha1};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::policy::{
    Action, BasicConstraints, CertificatePolicy, IssuerParameters, KeyProperties, KeySpec,
    LifetimeAction, PolicyAttributes, SecretProperties, SubjectAlternativeNames, Trigger,
    X509Properties, PEM, PKCS12,
};

/// Seconds in one policy month: Key Vault makes a 12-month certificate exactly 365 days long.
pub(crate) const MONTH_SECONDS: i64 = 31_536_000 / 12;
/// Key Vault back-dates self-signed certificates by ten minutes.
pub(crate) const BACKDATE_SECONDS: i64 = 600;

/// A private key (PKCS#8 DER) with the algorithm that signs with it.
pub(crate) struct GeneratedKey {
    pub pkcs8: Vec<u8>,
    pub alg: &'static SignatureAlgorithm,
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// A Key Vault object version: 32 lowercase hex digits.
pub(crate) fn new_version() -> String {
    hex::encode(random_bytes::<16>())
}

pub(crate) fn new_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Generates a key. RSA is slow (ring cannot generate RSA keys, the pure-Rust `rsa` crate does):
/// call it off the HTTP workers.
pub(crate) fn generate_key(spec: KeySpec) -> Result<GeneratedKey, String> {
    match spec {
        KeySpec::Rsa(bits) => {
            use rsa::pkcs8::EncodePrivateKey as _;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits as usize)
                .map_err(|e| format!("RSA key generation failed: {e}"))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| format!("RSA key encoding failed: {e}"))?;
            Ok(GeneratedKey {
                pkcs8: der.as_bytes().to_vec(),
                alg: &rcgen::PKCS_RSA_SHA256,
            })
        }
        KeySpec::EcP256 | KeySpec::EcP384 => {
            let alg = if spec == KeySpec::EcP256 {
                &rcgen::PKCS_ECDSA_P256_SHA256
            } else {
                &rcgen::PKCS_ECDSA_P384_SHA384
            };
            let key =
                KeyPair::generate_for(alg).map_err(|e| format!("EC key generation failed: {e}"))?;
            Ok(GeneratedKey {
                pkcs8: key.serialize_der(),
                alg,
            })
        }
    }
}

impl GeneratedKey {
    pub fn key_pair(&self) -> Result<KeyPair, String> {
        KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(self.pkcs8.clone()),
            self.alg,
        )
        .map_err(|e| format!("cannot load the generated key: {e}"))
    }
}

/// Parses a subject such as `CN=www.contoso.com, O=Contoso, S=WA, C=US`.
fn parse_subject(subject: &str) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    for part in subject.split([',', ';']) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("the subject '{subject}' is not a valid X.500 name"))?;
        let value = value.trim().trim_matches('"').to_owned();
        let ty = match key.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            "S" | "ST" => DnType::StateOrProvinceName,
            "E" | "EMAIL" => DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            "DC" => DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
            "STREET" => DnType::CustomDnType(vec![2, 5, 4, 9]),
            other => return Err(format!("the subject attribute '{other}' is not supported")),
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

/// Certificate parameters from a resolved policy.
pub(crate) fn params_from_policy(
    policy: &CertificatePolicy,
    now: i64,
) -> Result<CertificateParams, String> {
    let x509 = policy.x509_props.clone().unwrap_or_default();
    let mut params = CertificateParams::default();
    let sans = x509.sans.clone().unwrap_or_default();
    match x509.subject.as_deref() {
        Some(subject) if !subject.trim().is_empty() => {
            params.distinguished_name = parse_subject(subject)?
        }
        _ if !sans.is_empty() => params.distinguished_name = DistinguishedName::new(),
        _ => {
            return Err("the policy has neither x509_props.subject nor x509_props.sans".to_owned())
        }
    }
    for name in sans.dns_names.iter().flatten() {
        let name = name
            .clone()
            .try_into()
            .map_err(|_| format!("'{name}' is not a valid DNS name"))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for email in sans.emails.iter().flatten() {
        let email = email
            .clone()
            .try_into()
            .map_err(|_| format!("'{email}' is not a valid e-mail address"))?;
        params.subject_alt_names.push(SanType::Rfc822Name(email));
    }
    for uri in sans.uris.iter().flatten() {
        let uri = uri
            .clone()
            .try_into()
            .map_err(|_| format!("'{uri}' is not a valid URI"))?;
        params.subject_alt_names.push(SanType::URI(uri));
    }
    for ip in sans.ip_addresses.iter().flatten() {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("'{ip}' is not an IP address"))?;
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    for upn in sans.upns.iter().flatten() {
        params.subject_alt_names.push(SanType::OtherName((
            vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
            rcgen::OtherNameValue::Utf8String(upn.clone()),
        )));
    }
    for eku in x509.ekus.iter().flatten() {
        let arcs: Vec<u64> = eku
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| format!("'{eku}' is not an object identifier"))?;
        params.extended_key_usages.push(match arcs.as_slice() {
            [1, 3, 6, 1, 5, 5, 7, 3, 1] => ExtendedKeyUsagePurpose::ServerAuth,
            [1, 3, 6, 1, 5, 5, 7, 3, 2] => ExtendedKeyUsagePurpose::ClientAuth,
            [1, 3, 6, 1, 5, 5, 7, 3, 3] => ExtendedKeyUsagePurpose::CodeSigning,
            [1, 3, 6, 1, 5, 5, 7, 3, 4] => ExtendedKeyUsagePurpose::EmailProtection,
            [1, 3, 6, 1, 5, 5, 7, 3, 8] => ExtendedKeyUsagePurpose::TimeStamping,
            [1, 3, 6, 1, 5, 5, 7, 3, 9] => ExtendedKeyUsagePurpose::OcspSigning,
            _ => ExtendedKeyUsagePurpose::Other(arcs),
        });
    }
    for usage in x509.key_usage.iter().flatten() {
        params.key_usages.push(match usage.as_str() {
            "digitalSignature" => KeyUsagePurpose::DigitalSignature,
            "nonRepudiation" => KeyUsagePurpose::ContentCommitment,
            "keyEncipherment" => KeyUsagePurpose::KeyEncipherment,
            "dataEncipherment" => KeyUsagePurpose::DataEncipherment,
            "keyAgreement" => KeyUsagePurpose::KeyAgreement,
            "keyCertSign" => KeyUsagePurpose::KeyCertSign,
            "cRLSign" => KeyUsagePurpose::CrlSign,
            "encipherOnly" => KeyUsagePurpose::EncipherOnly,
            "decipherOnly" => KeyUsagePurpose::DecipherOnly,
            other => return Err(format!("key usage '{other}' is not valid")),
        });
    }
    params.is_ca = if x509.basic_constraints.is_some_and(|b| b.ca) {
        IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
    } else {
        // No extension: rcgen's `ExplicitNoCa` encodes the DEFAULT `cA FALSE`, which strict DER
        // parsers (Python `cryptography`) reject.
        IsCa::NoCa
    };
    let months = i64::from(x509.validity_months.unwrap_or(12));
    params.not_before = time::OffsetDateTime::from_unix_timestamp(now - BACKDATE_SECONDS)
        .map_err(|e| e.to_string())?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(now + months * MONTH_SECONDS)
        .map_err(|e| e.to_string())?;
    let mut serial = random_bytes::<16>();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

/// The CSR (DER) Key Vault shows in a pending operation.
pub(crate) fn csr(params: &CertificateParams, key: &KeyPair) -> Result<Vec<u8>, String> {
    let mut request = CertificateParams::default();
    request.distinguished_name = params.distinguished_name.clone();
    request.subject_alt_names = params.subject_alt_names.clone();
    request.key_usages = params.key_usages.clone();
    request.extended_key_usages = params.extended_key_usages.clone();
    request
        .serialize_request(key)
        .map(|csr| csr.der().to_vec())
        .map_err(|e| format!("cannot make the CSR: {e}"))
}

pub(crate) fn self_signed(params: CertificateParams, key: &KeyPair) -> Result<Vec<u8>, String> {
    params
        .self_signed(key)
        .map(|cert| cert.der().to_vec())
        .map_err(|e| format!("cannot sign the certificate: {e}"))
}

/// `x5t`: base64url (no padding) SHA-1 of the DER certificate.
pub(crate) fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha1::digest(der))
}

/// A certificate's secret value: a password-less PKCS#12 (base64, 3DES + SHA-1 MAC, like Key
/// Vault's own export) or PEM (unencrypted PKCS#8 key first, then the chain).
pub(crate) fn secret_value(
    content_type: &str,
    chain: &[Vec<u8>],
    key_pkcs8: &[u8],
) -> Result<String, String> {
    if content_type == PEM {
        let mut out = pem_block("PRIVATE KEY", key_pkcs8);
        for cert in chain {
            out.push_str(&pem_block("CERTIFICATE", cert));
        }
        return Ok(out);
    }
    if chain.is_empty() {
        return Err("the chain is empty".to_owned());
    }
    Ok(STANDARD.encode(crate::pfx::write(chain, key_pkcs8, &new_uuid())))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A certificate to import: its chain (leaf first) and its PKCS#8 key.
pub(crate) struct Imported {
    pub chain: Vec<Vec<u8>>,
    pub key_pkcs8: Vec<u8>,
    /// `application/x-pem-file` or `application/x-pkcs12`: what was given.
    pub given_as: &'static str,
}

/// Decodes an import value: PEM text (key and certificates) or PKCS#12 bytes.
pub(crate) fn decode_import(bytes: &[u8], password: Option<&str>) -> Result<Imported, String> {
    let is_pem = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|start| bytes[start..].starts_with(b"-----BEGIN"));
    let (bundle, given_as) = if is_pem {
        (
            cert_bundle::CertificateBundle::from_pem(bytes).map_err(|e| e.to_string())?,
            PEM,
        )
    } else {
        let password = password.filter(|p| !p.is_empty());
        (
            cert_bundle::CertificateBundle::from_pfx(bytes, password).map_err(|e| e.to_string())?,
            PKCS12,
        )
    };
    let key_pkcs8 = match bundle.private_key() {
        PrivateKeyDer::Pkcs8(key) => key.secret_pkcs8_der().to_vec(),
        _ => return Err(
            "Key Vault only accepts a private key in PKCS#8 format (-----BEGIN PRIVATE KEY-----)"
                .to_owned(),
        ),
    };
    Ok(Imported {
        chain: bundle.chain().iter().map(|c| c.to_vec()).collect(),
        key_pkcs8,
        given_as,
    })
}

/// `notBefore`/`notAfter` of a certificate, in unix seconds.
pub(crate) fn validity(der: &[u8]) -> Result<(i64, i64), String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("invalid certificate: {e}"))?;
    Ok((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

fn oid_short_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "S",
        "2.5.4.9" => "STREET",
        "1.2.840.113549.1.9.1" => "E",
        "0.9.2342.19200300.100.1.25" => "DC",
        other => return format!("OID.{other}"),
    }
    .to_owned()
}

/// The policy Key Vault makes for an imported certificate: read from the certificate, issuer
/// `Unknown`, an `EmailContacts` lifetime action at 80 %, the subject written .NET style (most
/// significant RDN last, `S=` for the state).
pub(crate) fn policy_from_certificate(
    leaf: &[u8],
    content_type: &str,
    now: i64,
) -> Result<CertificatePolicy, String> {
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|e| format!("invalid certificate: {e}"))?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        for attr in rdn.iter() {
            let value = attr.as_str().map(str::to_owned).unwrap_or_default();
            rdns.push(format!(
                "{}={}",
                oid_short_name(&attr.attr_type().to_id_string()),
                value
            ));
        }
    }
    rdns.reverse();
    let mut sans = SubjectAlternativeNames::default();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans
                    .dns_names
                    .get_or_insert_with(Vec::new)
                    .push((*dns).to_owned()),
                GeneralName::RFC822Name(email) => sans
                    .emails
                    .get_or_insert_with(Vec::new)
                    .push((*email).to_owned()),
                GeneralName::URI(uri) => sans
                    .uris
                    .get_or_insert_with(Vec::new)
                    .push((*uri).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.ip_addresses
                            .get_or_insert_with(Vec::new)
                            .push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let ekus = cert.extended_key_usage().ok().flatten().map(|ext| {
        let eku = ext.value;
        let mut out = Vec::new();
        for (on, oid) in [
            (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
            (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
            (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
            (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
            (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
            (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
        ] {
            if on {
                out.push(oid.to_owned());
            }
        }
        out.extend(eku.other.iter().map(|oid| oid.to_id_string()));
        out
    });
    let key_usage = cert.key_usage().ok().flatten().map(|ext| {
        let ku = ext.value;
        let mut out = Vec::new();
        for (on, name) in [
            (ku.digital_signature(), "digitalSignature"),
            (ku.non_repudiation(), "nonRepudiation"),
            (ku.key_encipherment(), "keyEncipherment"),
            (ku.data_encipherment(), "dataEncipherment"),
            (ku.key_agreement(), "keyAgreement"),
            (ku.key_cert_sign(), "keyCertSign"),
            (ku.crl_sign(), "cRLSign"),
            (ku.encipher_only(), "encipherOnly"),
            (ku.decipher_only(), "decipherOnly"),
        ] {
            if on {
                out.push(name.to_owned());
            }
        }
        out
    });
    let ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|ext| ext.value.ca);
    let validity = cert.validity();
    let seconds = validity.not_after.timestamp() - validity.not_before.timestamp();
    let months = (seconds + MONTH_SECONDS - 1) / MONTH_SECONDS;
    let spki = cert.public_key();
    let key_props = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => KeyProperties {
            exportable: Some(true),
            kty: Some("RSA".to_owned()),
            key_size: u32::try_from(rsa.key_size()).ok(),
            reuse_key: Some(false),
            crv: None,
        },
        Ok(x509_parser::public_key::PublicKey::EC(ec)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            KeyProperties {
                exportable: Some(true),
                kty: Some("EC".to_owned()),
                key_size: u32::try_from(ec.key_size()).ok(),
                reuse_key: Some(false),
                crv: curve.map(|c| {
                    match c.as_str() {
                        "1.2.840.10045.3.1.7" => "P-256",
                        "1.3.132.0.34" => "P-384",
                        "1.3.132.0.35" => "P-521",
                        "1.3.132.0.10" => "P-256K",
                        _ => "unknown",
                    }
                    .to_owned()
                }),
            }
        }
        _ => KeyProperties {
            exportable: Some(true),
            ..Default::default()
        },
    };
    Ok(CertificatePolicy {
        key_props: Some(key_props),
        secret_props: Some(SecretProperties {
            content_type: Some(content_type.to_owned()),
        }),
        x509_props: Some(X509Properties {
            subject: Some(rdns.join(", ")),
            sans: (!sans.is_empty()).then_some(sans),
            ekus,
            key_usage,
            validity_months: u32::try_from(months).ok(),
            basic_constraints: Some(BasicConstraints { ca }),
        }),
        lifetime_actions: Some(vec![LifetimeAction {
            trigger: Trigger {
                lifetime_percentage: Some(80),
                days_before_expiry: None,
            },
            action: Action {
                action_type: "EmailContacts".to_owned(),
            },
        }]),
        issuer: Some(IssuerParameters {
            name: Some("Unknown".to_owned()),
            ..Default::default()
        }),
        attributes: Some(PolicyAttributes {
            enabled: Some(true),
            created: Some(now),
            updated: Some(now),
        }),
    })
}
