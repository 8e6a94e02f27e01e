//! PKCS#12 compatibility: one row per file in `data/compat`, written by each producer a gateway
//! meets — OpenSSL 3 defaults and `-legacy`, Java keytool, Python `cryptography` with each of its
//! encryption choices — for RSA 2048/3072/4096 and EC P-256/P-384 leaves with their chain.
//! `data/regenerate-compat.sh` writes the files; nothing here needs those tools.
//!
//! Each row says what the file must give: the leaf (whose thumbprint must equal both the PEM
//! certificate written beside it and the fingerprint OpenSSL printed for it), the chain length,
//! leaf first, and the key type, which must be the leaf's key. A file that cannot be supported
//! must instead fail with an error that names the algorithm.

mod common;

use std::collections::BTreeSet;

use cert_bundle::{BundleError, CertificateBundle, Thumbprint};
use common::*;
use der::asn1::{BitStringRef, ObjectIdentifier as Oid, UintRef};
use der::{AnyRef, Decode, Reader, SliceReader, Tag, TagNumber, Tagged};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::public_key::PublicKey;

const PW: Option<&str> = Some(PASSWORD);
const NO_PASSWORD: Option<&str> = None;

/// The key a bundle must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Rsa(usize),
    P256,
    P384,
}
use Key::*;

/// What opening a file must give.
enum Expect {
    /// Opens; the leaf is `compat/<leaf>.pem`, the chain has `chain` certificates: the leaf and
    /// then (when longer than one) the compat intermediate and root.
    Opens {
        leaf: &'static str,
        chain: usize,
        key: Key,
    },
    /// Fails with `BundleError::UnsupportedAlgorithm` whose message contains each of these.
    Unsupported(&'static [&'static str]),
}
use Expect::*;

/// A leaf from the shared compat PKI with the intermediate and root behind it.
fn with_chain(kind: &'static str, key: Key) -> Expect {
    let leaf = match kind {
        "rsa2048" => "leaf-rsa2048",
        "rsa3072" => "leaf-rsa3072",
        "rsa4096" => "leaf-rsa4096",
        "p256" => "leaf-p256",
        "p384" => "leaf-p384",
        other => panic!("no compat leaf {other}"),
    };
    Opens {
        leaf,
        chain: 3,
        key,
    }
}

fn compat(name: &str) -> Vec<u8> {
    data(&format!("compat/{name}"))
}

fn compat_cert(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(&compat(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[track_caller]
fn check(file: &str, password: Option<&str>, expected: Expect) {
    let result = CertificateBundle::from_pfx(&compat(file), password);
    match expected {
        Opens { leaf, chain, key } => {
            let bundle = result.unwrap_or_else(|e| panic!("{file}: does not open: {e}"));
            let leaf_pem = compat_cert(&format!("{leaf}.pem"));
            assert_eq!(bundle.leaf(), &leaf_pem, "{file}: the leaf");
            assert_eq!(
                bundle.thumbprint(),
                openssl_fingerprint(&format!("compat/{leaf}.sha256")),
                "{file}: the thumbprint OpenSSL printed"
            );
            assert_eq!(bundle.chain().len(), chain, "{file}: chain length");
            if chain > 1 {
                let issuers = [compat_cert("intermediate.pem"), compat_cert("root.pem")];
                assert_eq!(
                    bundle.chain()[1..],
                    issuers[..chain - 1],
                    "{file}: leaf first, then intermediate, then root"
                );
            }
            let PrivateKeyDer::Pkcs8(pkcs8) = bundle.private_key() else {
                panic!("{file}: PFX keys come out as PKCS#8");
            };
            let (found, public) = key_of(pkcs8.secret_pkcs8_der());
            assert_eq!(found, key, "{file}: key type");
            if let Some(public) = public {
                assert_eq!(
                    public,
                    leaf_public_key(&leaf_pem),
                    "{file}: the key is not the leaf's"
                );
            }
        }
        Unsupported(names) => {
            let err = match result {
                Ok(bundle) => panic!("{file}: opened ({bundle:?}) but should be unsupported"),
                Err(e) => e,
            };
            assert!(
                matches!(err, BundleError::UnsupportedAlgorithm { .. }),
                "{file}: {err:?}"
            );
            let message = err.to_string();
            for name in names {
                assert!(message.contains(name), "{file}: {message} lacks {name}");
            }
        }
    }
}

#[test]
fn openssl3_defaults_open_for_every_key_type() {
    check("openssl3-rsa2048.pfx", PW, with_chain("rsa2048", Rsa(2048)));
    check("openssl3-rsa3072.pfx", PW, with_chain("rsa3072", Rsa(3072)));
    check("openssl3-rsa4096.pfx", PW, with_chain("rsa4096", Rsa(4096)));
    check("openssl3-p256.pfx", PW, with_chain("p256", P256));
    check("openssl3-p384.pfx", PW, with_chain("p384", P384));
}

#[test]
fn openssl_legacy_opens_for_every_key_type() {
    check(
        "openssl-legacy-rsa2048.pfx",
        PW,
        with_chain("rsa2048", Rsa(2048)),
    );
    check(
        "openssl-legacy-rsa3072.pfx",
        PW,
        with_chain("rsa3072", Rsa(3072)),
    );
    check(
        "openssl-legacy-rsa4096.pfx",
        PW,
        with_chain("rsa4096", Rsa(4096)),
    );
    check("openssl-legacy-p256.pfx", PW, with_chain("p256", P256));
    check("openssl-legacy-p384.pfx", PW, with_chain("p384", P384));
}

#[test]
fn openssl3_option_variants_open() {
    // A plain keyBag and plain certBags, no MAC at all.
    check(
        "openssl3-p384-unencrypted-nomac.pfx",
        NO_PASSWORD,
        with_chain("p384", P384),
    );
    // Nothing encrypted, but a MAC keyed by the empty password.
    check(
        "openssl3-rsa3072-unencrypted-emptypass.pfx",
        NO_PASSWORD,
        with_chain("rsa3072", Rsa(3072)),
    );
    // One iteration everywhere; the MacData leaves out its optional iteration count.
    check(
        "openssl3-p256-noiter-nomaciter.pfx",
        PW,
        with_chain("p256", P256),
    );
    // PBES2 with 3DES for the key, certificates unencrypted.
    check(
        "openssl3-rsa2048-pbes2-3des.pfx",
        PW,
        with_chain("rsa2048", Rsa(2048)),
    );
}

#[test]
fn java_keytool_keystores_open() {
    // `keytool -genkeypair -storetype PKCS12`: a self-signed certificate, no chain.
    let self_signed = |leaf, key| Opens {
        leaf,
        chain: 1,
        key,
    };
    check(
        "keytool-genkeypair-rsa2048.p12",
        PW,
        self_signed("keytool-genkeypair-rsa2048", Rsa(2048)),
    );
    check(
        "keytool-genkeypair-p256.p12",
        PW,
        self_signed("keytool-genkeypair-p256", P256),
    );
    // `keytool -importkeystore` of an OpenSSL PFX with a chain.
    check(
        "keytool-import-rsa2048.p12",
        PW,
        with_chain("rsa2048", Rsa(2048)),
    );
    check("keytool-import-p384.p12", PW, with_chain("p384", P384));
    // ... with `-Dkeystore.pkcs12.legacy` (RC2-40, 3DES, SHA-1 MAC).
    check(
        "keytool-import-legacy-rsa4096.p12",
        PW,
        with_chain("rsa4096", Rsa(4096)),
    );
    // ... with certificates unencrypted and no MAC; the key stays encrypted.
    check(
        "keytool-import-nomac-p256.p12",
        PW,
        with_chain("p256", P256),
    );
}

#[test]
fn python_cryptography_best_available_encryption_opens_for_every_key_type() {
    check(
        "python-best-rsa2048.p12",
        PW,
        with_chain("rsa2048", Rsa(2048)),
    );
    check(
        "python-best-rsa3072.p12",
        PW,
        with_chain("rsa3072", Rsa(3072)),
    );
    check(
        "python-best-rsa4096.p12",
        PW,
        with_chain("rsa4096", Rsa(4096)),
    );
    check("python-best-p256.p12", PW, with_chain("p256", P256));
    check("python-best-p384.p12", PW, with_chain("p384", P384));
}

#[test]
fn python_cryptography_no_encryption_opens_without_a_password() {
    check(
        "python-noencryption-rsa2048.p12",
        NO_PASSWORD,
        with_chain("rsa2048", Rsa(2048)),
    );
    check(
        "python-noencryption-p256-nochain.p12",
        NO_PASSWORD,
        Opens {
            leaf: "leaf-p256",
            chain: 1,
            key: P256,
        },
    );
}

#[test]
fn python_cryptography_encryption_builder_opens_with_each_algorithm_and_mac() {
    let rsa = || with_chain("rsa2048", Rsa(2048));
    check("python-3des-defaultmac-rsa2048.p12", PW, rsa());
    check("python-3des-sha1mac-rsa2048.p12", PW, rsa());
    check("python-3des-sha256mac-rsa2048.p12", PW, rsa());
    check("python-aes256-defaultmac-rsa2048.p12", PW, rsa());
    check("python-aes256-sha1mac-rsa2048.p12", PW, rsa());
    check("python-aes256-sha256mac-rsa2048.p12", PW, rsa());
    check(
        "python-builder-defaults-p384.p12",
        PW,
        with_chain("p384", P384),
    );
}

#[test]
fn python_cryptography_encryption_builder_opens_with_any_kdf_rounds() {
    let ec = || with_chain("p256", P256);
    check("python-3des-rounds1-p256.p12", PW, ec());
    check("python-3des-rounds2048-p256.p12", PW, ec());
    check("python-3des-rounds50000-p256.p12", PW, ec());
    check("python-aes256-rounds1-p256.p12", PW, ec());
    check("python-aes256-rounds2048-p256.p12", PW, ec());
    check("python-aes256-rounds50000-p256.p12", PW, ec());
}

#[test]
fn unimplemented_algorithms_fail_naming_the_algorithm() {
    check(
        "unsupported-openssl-legacy-rc4-key.pfx",
        PW,
        Unsupported(&[
            "encryption algorithm",
            "1.2.840.113549.1.12.1.1",
            "pbeWithSHAAnd128BitRC4",
        ]),
    );
    check(
        "unsupported-openssl-legacy-md5-des-key.pfx",
        PW,
        Unsupported(&[
            "encryption algorithm",
            "1.2.840.113549.1.5.3",
            "pbeWithMD5AndDES-CBC",
        ]),
    );
    check(
        "unsupported-openssl-pbes2-des-key.pfx",
        PW,
        Unsupported(&["PBES2 encryption scheme", "1.3.14.3.2.7", "DES-CBC"]),
    );
    check(
        "unsupported-openssl-pbes2-camellia-key.pfx",
        PW,
        Unsupported(&[
            "PBES2 encryption scheme",
            "1.2.392.200011.61.1.1.1.4",
            "Camellia-256-CBC",
        ]),
    );
    check(
        "unsupported-openssl-md5-mac.pfx",
        PW,
        Unsupported(&["MAC algorithm", "1.2.840.113549.2.5", "MD5"]),
    );
    check(
        "unsupported-openssl-sha3-mac.pfx",
        PW,
        Unsupported(&["MAC algorithm", "2.16.840.1.101.3.4.2.8", "SHA3-256"]),
    );
    // RFC 9579's PBKDF2-based MAC, which OpenSSL 3.4+ writes on request.
    check(
        "unsupported-pbmac1.pfx",
        PW,
        Unsupported(&["MAC algorithm", "1.2.840.113549.1.5.14", "PBMAC1"]),
    );
}

#[test]
fn every_compat_fixture_has_a_row() {
    let source = include_str!("compat.rs");
    let dir = data_path("compat");
    let mut missing = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let is_pfx = name.ends_with(".pfx") || name.ends_with(".p12");
        if is_pfx && !source.contains(&format!("\"{name}\"")) {
            missing.insert(name);
        }
    }
    assert!(missing.is_empty(), "no row for {missing:?}");
}

#[test]
fn thumbprints_are_the_openssl_fingerprints() {
    // The rows compare against the `.sha256` files; make sure those agree with the PEMs.
    for leaf in [
        "leaf-rsa2048",
        "leaf-rsa3072",
        "leaf-rsa4096",
        "leaf-p256",
        "leaf-p384",
        "keytool-genkeypair-rsa2048",
        "keytool-genkeypair-p256",
    ] {
        assert_eq!(
            Thumbprint::of(&compat_cert(&format!("{leaf}.pem"))),
            openssl_fingerprint(&format!("compat/{leaf}.sha256")),
            "{leaf}"
        );
    }
}

// --- key inspection ------------------------------------------------------------------------------

const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: Oid = Oid::new_unwrap("1.3.132.0.34");

/// The elements of a DER SEQUENCE.
fn sequence(der: &[u8]) -> Vec<AnyRef<'_>> {
    let any = AnyRef::from_der(der).expect("DER");
    assert_eq!(any.tag(), Tag::Sequence);
    let mut reader = SliceReader::new(any.value()).unwrap();
    let mut items = Vec::new();
    while !reader.is_finished() {
        items.push(AnyRef::decode(&mut reader).unwrap());
    }
    items
}

/// The key's type and, where the key carries it, its public part (RSA modulus, EC point).
fn key_of(pkcs8: &[u8]) -> (Key, Option<Vec<u8>>) {
    let info = pkcs8::PrivateKeyInfo::try_from(pkcs8).expect("PKCS#8");
    match info.algorithm.oid {
        RSA_ENCRYPTION => {
            // RSAPrivateKey ::= SEQUENCE { version, modulus, publicExponent, ... }
            let fields = sequence(info.private_key);
            let modulus: UintRef<'_> = fields[1].decode_as().expect("RSA modulus");
            let modulus = modulus.as_bytes();
            let bits = modulus.len() * 8 - modulus[0].leading_zeros() as usize;
            (Rsa(bits), Some(modulus.to_vec()))
        }
        EC_PUBLIC_KEY => {
            let curve: Oid = info
                .algorithm
                .parameters
                .expect("EC parameters")
                .decode_as()
                .expect("a named curve");
            let key = match curve {
                SECP256R1 => P256,
                SECP384R1 => P384,
                other => panic!("unexpected curve {other}"),
            };
            // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters OPTIONAL,
            //                             [1] publicKey BIT STRING OPTIONAL }
            let public = sequence(info.private_key)
                .into_iter()
                .find(|field| {
                    field.tag()
                        == Tag::ContextSpecific {
                            constructed: true,
                            number: TagNumber::N1,
                        }
                })
                .map(|field| {
                    let bits = BitStringRef::from_der(field.value()).expect("EC public key");
                    bits.raw_bytes().to_vec()
                });
            (key, public)
        }
        other => panic!("unexpected key algorithm {other}"),
    }
}

/// The leaf's RSA modulus (without leading zeros) or EC point.
fn leaf_public_key(leaf: &CertificateDer<'_>) -> Vec<u8> {
    let (_, x509) = x509_parser::parse_x509_certificate(leaf).unwrap();
    match x509.public_key().parsed().unwrap() {
        PublicKey::RSA(rsa) => {
            let m = rsa.modulus;
            m[m.iter().take_while(|&&b| b == 0).count()..].to_vec()
        }
        PublicKey::EC(point) => point.data().to_vec(),
        _ => panic!("unexpected leaf key type"),
    }
}
