//! The seal key file and the AES-256-GCM sealing of private keys.
//!
//! The key file holds 32 random bytes, is created with mode 0600 (never briefly wider), and is
//! refused when group or others may read it. A sealed key is `nonce (12 bytes) || ciphertext`,
//! where the plaintext is a one-byte key-type tag followed by the key's DER, and the associated
//! data binds the listener name and the certificate thumbprint, so material cannot be moved to
//! another listener or certificate without failing to open.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use cert_bundle::Thumbprint;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};

use crate::error::EventLogError;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Distinguishes this use of the key from any future one.
const AAD_LABEL: &[u8] = b"event-log sealed private key v1\0";

const TAG_PKCS1: u8 = 1;
const TAG_SEC1: u8 = 2;
const TAG_PKCS8: u8 = 3;

/// Reads the seal key at `path`, or creates it when `may_create`.
pub(crate) fn load_or_create_key(
    path: &Path,
    may_create: bool,
) -> Result<Aes256Gcm, EventLogError> {
    let io_error = |source| EventLogError::SealKeyIo {
        path: path.to_owned(),
        source,
    };
    if may_create {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                let mut key = [0u8; KEY_LEN];
                let written = getrandom::getrandom(&mut key)
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|()| file.write_all(&key))
                    .and_then(|()| file.sync_all());
                if let Err(e) = written {
                    // A short key file (a full disk) would later read as a damaged key: leave
                    // none, so that the next start creates it again.
                    drop(file);
                    let _ = fs::remove_file(path);
                    return Err(io_error(e));
                }
                tracing::info!(path = %path.display(), "created a new seal key");
                return Aes256Gcm::new_from_slice(&key).map_err(|_| EventLogError::SealKeyLength {
                    path: path.to_owned(),
                    len: KEY_LEN as u64,
                });
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    let mut file = fs::File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(EventLogError::SealKeyPermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    if metadata.len() != KEY_LEN as u64 {
        return Err(EventLogError::SealKeyLength {
            path: path.to_owned(),
            len: metadata.len(),
        });
    }
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key).map_err(io_error)?;
    Aes256Gcm::new_from_slice(&key).map_err(|_| EventLogError::SealKeyLength {
        path: path.to_owned(),
        len: metadata.len(),
    })
}

fn associated_data(listener: &str, thumbprint: &Thumbprint) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 8 + listener.len() + 32);
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(&(listener.len() as u64).to_be_bytes());
    aad.extend_from_slice(listener.as_bytes());
    aad.extend_from_slice(&thumbprint.0);
    aad
}

/// Seals `key` for `listener` and `thumbprint`.
pub(crate) fn seal_key(
    cipher: &Aes256Gcm,
    listener: &str,
    thumbprint: &Thumbprint,
    key: &PrivateKeyDer<'_>,
) -> Result<Vec<u8>, EventLogError> {
    let (tag, der) = match key {
        PrivateKeyDer::Pkcs1(k) => (TAG_PKCS1, k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => (TAG_SEC1, k.secret_sec1_der()),
        PrivateKeyDer::Pkcs8(k) => (TAG_PKCS8, k.secret_pkcs8_der()),
        _ => {
            return Err(EventLogError::UnsupportedKey {
                listener: listener.to_owned(),
            })
        }
    };
    let mut plaintext = Vec::with_capacity(1 + der.len());
    plaintext.push(tag);
    plaintext.extend_from_slice(der);

    let mut nonce = [0u8; NONCE_LEN];
    let seal_error = || EventLogError::Seal {
        listener: listener.to_owned(),
    };
    getrandom::getrandom(&mut nonce).map_err(|_| seal_error())?;
    let aad = associated_data(listener, thumbprint);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| seal_error());
    wipe(&mut plaintext);
    let ciphertext = ciphertext?;

    let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// Opens a key sealed by [`seal_key`] for the same listener and thumbprint. `None` when it does
/// not open (another seal key, listener or thumbprint, or altered bytes).
pub(crate) fn open_key(
    cipher: &Aes256Gcm,
    listener: &str,
    thumbprint: &Thumbprint,
    sealed: &[u8],
) -> Option<PrivateKeyDer<'static>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let aad = associated_data(listener, thumbprint);
    let mut plaintext = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()?;
    let key = match plaintext.split_first() {
        Some((&TAG_PKCS1, der)) => {
            Some(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.to_vec())))
        }
        Some((&TAG_SEC1, der)) => Some(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der.to_vec()))),
        Some((&TAG_PKCS8, der)) => {
            Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec())))
        }
        _ => None,
    };
    wipe(&mut plaintext);
    key
}

/// Overwrites a buffer that held key material before it is freed.
fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&[5; 32]).expect("32 bytes")
    }

    #[test]
    fn every_key_type_round_trips_with_its_tag() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x07];
        let t = Thumbprint([3; 32]);
        let keys = [
            PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.clone())),
            PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der.clone())),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())),
        ];
        for key in keys {
            let sealed = seal_key(&cipher(), "web", &t, &key).expect("seal");
            let opened = open_key(&cipher(), "web", &t, &sealed).expect("open");
            assert_eq!(opened, key);
        }
    }

    #[test]
    fn sealed_material_is_bound_to_listener_thumbprint_and_key() {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(vec![1, 2, 3, 4]));
        let t = Thumbprint([3; 32]);
        let sealed = seal_key(&cipher(), "web", &t, &key).expect("seal");
        assert!(open_key(&cipher(), "api", &t, &sealed).is_none());
        assert!(open_key(&cipher(), "web", &Thumbprint([4; 32]), &sealed).is_none());
        let other = Aes256Gcm::new_from_slice(&[6; 32]).expect("32 bytes");
        assert!(open_key(&other, "web", &t, &sealed).is_none());
        let mut altered = sealed.clone();
        *altered.last_mut().expect("not empty") ^= 1;
        assert!(open_key(&cipher(), "web", &t, &altered).is_none());
        assert!(open_key(&cipher(), "web", &t, &sealed[..5]).is_none());
    }
}
