//! Certificates and events for the event log's tests.
#![allow(dead_code)] // each test crate uses its own part

use cert_bundle::{CertificateBundle, Thumbprint};
use event_log::{Envelope, Event, EventLog, EventLogError, Trigger};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A leaf certificate for `names` signed by a fresh CA, with its PKCS#8 key.
pub fn bundle_for(names: Vec<String>) -> CertificateBundle {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(names)
        .expect("leaf params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    CertificateBundle::new(
        vec![leaf.der().clone(), ca.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .expect("bundle")
}

/// A leaf certificate for `name` signed by a fresh CA, with its PKCS#8 key.
pub fn bundle(name: &str) -> CertificateBundle {
    bundle_for(vec![name.to_owned()])
}

pub fn key_der(bundle: &CertificateBundle) -> Vec<u8> {
    match bundle.private_key() {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        other => panic!("unexpected key type {other:?}"),
    }
}

/// Appends the install of `bundle` on `listener`, sealed for it.
pub fn try_install(
    log: &EventLog,
    listener: &str,
    bundle: &CertificateBundle,
    previous: Option<Thumbprint>,
) -> Result<Envelope, EventLogError> {
    let event = Event::CertificateInstalled {
        trigger: Trigger::Schedule,
        previous,
        thumbprint: bundle.thumbprint(),
        version: Some("0123abcd".into()),
        source: format!("https://v.vault.azure.net/secrets/{listener}"),
        not_after: 1_900_000_000,
        material: log.seal(listener, bundle)?,
    };
    log.append(listener, event)
}

pub fn install(
    log: &EventLog,
    listener: &str,
    bundle: &CertificateBundle,
    previous: Option<Thumbprint>,
) -> Envelope {
    try_install(log, listener, bundle, previous).expect("append install")
}

pub fn configured(source: &str) -> Event {
    Event::ListenerConfigured {
        source: source.into(),
    }
}
