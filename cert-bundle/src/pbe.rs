//! The password-based cryptography of PKCS#12: the RFC 7292 appendix B key derivation, the
//! integrity MAC, PKCS#12 PBE and PBES2 (RFC 8018) decryption.
//!
//! Only decryption is implemented; nothing here writes PFX files.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, InnerIvInit, KeyInit, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::digest::core_api::BlockSizeUser;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// The byte strings a password is fed to the key derivations as.
///
/// PKCS#12's own KDF takes the password as a NUL-terminated big-endian BMPString; PBKDF2 takes
/// it as UTF-8. An empty password is ambiguous for the PKCS#12 KDF: OpenSSL writes `00 00` (the
/// encoded terminator), Windows and Key Vault write zero bytes, so both become candidates.
#[derive(Clone)]
pub(crate) struct Secret {
    pub(crate) bmp: Vec<u8>,
    pub(crate) utf8: Vec<u8>,
}

impl Secret {
    /// The candidates to try for `password`, in order.
    pub(crate) fn candidates(password: Option<&str>) -> Vec<Secret> {
        match password {
            None | Some("") => vec![
                Secret {
                    bmp: Vec::new(),
                    utf8: Vec::new(),
                },
                Secret {
                    bmp: vec![0, 0],
                    utf8: Vec::new(),
                },
            ],
            Some(pw) => {
                let mut bmp: Vec<u8> = pw.encode_utf16().flat_map(u16::to_be_bytes).collect();
                bmp.extend_from_slice(&[0, 0]);
                vec![Secret {
                    bmp,
                    utf8: pw.as_bytes().to_vec(),
                }]
            }
        }
    }
}

/// Digests usable for the PKCS#12 MAC and KDF, and as PBKDF2 PRFs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub(crate) fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha224 => 28,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// RFC 7292 appendix B.2 with this digest.
    pub(crate) fn pkcs12_kdf(
        self,
        password: &[u8],
        salt: &[u8],
        id: u8,
        iterations: u32,
        len: usize,
    ) -> Vec<u8> {
        match self {
            Hash::Sha1 => pkcs12_kdf::<Sha1>(password, salt, id, iterations, len),
            Hash::Sha224 => pkcs12_kdf::<Sha224>(password, salt, id, iterations, len),
            Hash::Sha256 => pkcs12_kdf::<Sha256>(password, salt, id, iterations, len),
            Hash::Sha384 => pkcs12_kdf::<Sha384>(password, salt, id, iterations, len),
            Hash::Sha512 => pkcs12_kdf::<Sha512>(password, salt, id, iterations, len),
        }
    }

    /// Constant-time check of an HMAC tag.
    pub(crate) fn hmac_verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        fn verify<M: Mac + KeyInit>(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
            let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
                return false;
            };
            mac.update(data);
            mac.verify_slice(tag).is_ok()
        }
        match self {
            Hash::Sha1 => verify::<Hmac<Sha1>>(key, data, tag),
            Hash::Sha224 => verify::<Hmac<Sha224>>(key, data, tag),
            Hash::Sha256 => verify::<Hmac<Sha256>>(key, data, tag),
            Hash::Sha384 => verify::<Hmac<Sha384>>(key, data, tag),
            Hash::Sha512 => verify::<Hmac<Sha512>>(key, data, tag),
        }
    }

    pub(crate) fn pbkdf2(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
        len: usize,
    ) -> Vec<u8> {
        let mut out = vec![0; len];
        match self {
            Hash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            Hash::Sha224 => pbkdf2::pbkdf2_hmac::<Sha224>(password, salt, iterations, &mut out),
            Hash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Hash::Sha384 => pbkdf2::pbkdf2_hmac::<Sha384>(password, salt, iterations, &mut out),
            Hash::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }
}

/// RFC 7292 appendix B.2. `id` is 1 for a key, 2 for an IV, 3 for a MAC key.
fn pkcs12_kdf<D: Digest + BlockSizeUser>(
    password: &[u8],
    salt: &[u8],
    id: u8,
    iterations: u32,
    len: usize,
) -> Vec<u8> {
    let u = <D as Digest>::output_size();
    let v = D::block_size();
    // Repeat to a whole number of v-byte blocks; an empty input stays empty, which is exactly
    // what distinguishes the zero-length password from the `00 00` one.
    let stretch = |x: &[u8]| -> Vec<u8> {
        if x.is_empty() {
            Vec::new()
        } else {
            (0..v * x.len().div_ceil(v))
                .map(|i| x[i % x.len()])
                .collect()
        }
    };
    let diversifier = vec![id; v];
    let mut input = stretch(salt);
    input.extend(stretch(password));

    let mut out = Vec::with_capacity(len);
    loop {
        let mut a = D::new()
            .chain_update(&diversifier)
            .chain_update(&input)
            .finalize();
        for _ in 1..iterations.max(1) {
            a = D::digest(&a);
        }
        let take = u.min(len - out.len());
        out.extend_from_slice(&a[..take]);
        if out.len() >= len {
            return out;
        }
        // I_j = (I_j + B + 1) mod 2^(8v), each block a big-endian integer.
        let b: Vec<u8> = (0..v).map(|k| a[k % u]).collect();
        for block in input.chunks_mut(v) {
            let mut carry = 1u16;
            for k in (0..v).rev() {
                let sum = u16::from(block[k]) + u16::from(b[k]) + carry;
                block[k] = sum as u8;
                carry = sum >> 8;
            }
        }
    }
}

/// Block ciphers in CBC mode with PKCS#7 padding, as PKCS#12 and PBES2 use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cipher {
    Aes128,
    Aes192,
    Aes256,
    /// Three-key triple DES.
    DesEde3,
    /// Two-key triple DES (K1, K2, K1).
    DesEde2,
    /// RC2 with a key of `key_len` bytes and as many effective bits.
    Rc2 {
        key_len: usize,
    },
}

impl Cipher {
    pub(crate) fn key_len(self) -> usize {
        match self {
            Cipher::Aes128 | Cipher::DesEde2 => 16,
            Cipher::Aes192 | Cipher::DesEde3 => 24,
            Cipher::Aes256 => 32,
            Cipher::Rc2 { key_len } => key_len,
        }
    }

    pub(crate) fn iv_len(self) -> usize {
        match self {
            Cipher::Aes128 | Cipher::Aes192 | Cipher::Aes256 => 16,
            Cipher::DesEde3 | Cipher::DesEde2 | Cipher::Rc2 { .. } => 8,
        }
    }

    /// Decrypts and strips the padding; `None` when the key, IV or padding is wrong, which is how
    /// a wrong password shows when there is no MAC.
    pub(crate) fn decrypt(self, key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        fn run<C: KeyIvInit + BlockDecryptMut>(
            key: &[u8],
            iv: &[u8],
            ct: &[u8],
        ) -> Option<Vec<u8>> {
            C::new_from_slices(key, iv)
                .ok()?
                .decrypt_padded_vec_mut::<Pkcs7>(ct)
                .ok()
        }
        match self {
            Cipher::Aes128 => run::<cbc::Decryptor<aes::Aes128>>(key, iv, ciphertext),
            Cipher::Aes192 => run::<cbc::Decryptor<aes::Aes192>>(key, iv, ciphertext),
            Cipher::Aes256 => run::<cbc::Decryptor<aes::Aes256>>(key, iv, ciphertext),
            Cipher::DesEde3 => run::<cbc::Decryptor<des::TdesEde3>>(key, iv, ciphertext),
            Cipher::DesEde2 => run::<cbc::Decryptor<des::TdesEde2>>(key, iv, ciphertext),
            Cipher::Rc2 { key_len } => {
                // The effective key length must match the key length (40-bit RC2 is 5 bytes with
                // 40 effective bits), which `Rc2::new` does not assume.
                let rc2 = rc2::Rc2::new_with_eff_key_len(key, key_len * 8);
                cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(rc2, iv)
                    .ok()?
                    .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
                    .ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs12_kdf_matches_the_published_vector() {
        // From the PKCS#12 test vectors shipped with OpenSSL's and Bouncy Castle's test suites:
        // password "smeg" (BMPString with terminator), salt 0A58CF64530D823F, id 1, 1 iteration.
        let password: Vec<u8> = "smeg"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .chain([0, 0])
            .collect();
        let salt = hex::decode("0A58CF64530D823F").unwrap();
        let key = Hash::Sha1.pkcs12_kdf(&password, &salt, 1, 1, 24);
        assert_eq!(
            hex::encode_upper(key),
            "8AAAE6297B6CB04642AB5B077851284EB7128F1A2A7FBCA3"
        );
        let iv = Hash::Sha1.pkcs12_kdf(&password, &salt, 2, 1, 8);
        assert_eq!(hex::encode_upper(iv), "79993DFE048D3B76");
    }

    #[test]
    fn empty_password_candidates_cover_both_encodings() {
        let c = Secret::candidates(None);
        assert_eq!(c.len(), 2);
        assert!(c[0].bmp.is_empty());
        assert_eq!(c[1].bmp, vec![0, 0]);
        assert_eq!(Secret::candidates(Some("")).len(), 2);
        let given = Secret::candidates(Some("ab"));
        assert_eq!(given.len(), 1);
        assert_eq!(given[0].bmp, vec![0, b'a', 0, b'b', 0, 0]);
        assert_eq!(given[0].utf8, b"ab".to_vec());
    }

    #[test]
    fn zero_length_and_bmp_empty_passwords_derive_different_keys() {
        let salt = [1u8; 8];
        assert_ne!(
            Hash::Sha1.pkcs12_kdf(&[], &salt, 3, 2000, 20),
            Hash::Sha1.pkcs12_kdf(&[0, 0], &salt, 3, 2000, 20)
        );
    }
}
