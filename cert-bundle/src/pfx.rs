//! PKCS#12 (RFC 7292) decoding on the `der` crate.
//!
//! Written by hand because the published decoders cannot open Key Vault's own export (its MAC key
//! comes from a zero-length password) and some lack PBES2. The walk is deliberately permissive
//! about what it skips (CRL and secret bags, unknown attributes, non-X.509 certificate bags) and
//! strict about what it uses, and every error says where in the structure it happened.

use der::asn1::ObjectIdentifier as Oid;
use der::{AnyRef, Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};

use crate::error::{BundleError, PasswordCheck};
use crate::pbe::{Cipher, Hash, Secret};

type Result<T> = std::result::Result<T, BundleError>;

/// Iteration counts above this are refused rather than computed: a hostile file could otherwise
/// pin a CPU for hours. Real exports use 2000 (Windows, Key Vault) to 600 000.
const MAX_ITERATIONS: u32 = 10_000_000;

/// `safeContentsBag`s may nest; real files never nest more than once.
const MAX_NESTING: u8 = 4;

mod oid {
    use der::asn1::ObjectIdentifier as Oid;

    pub(super) const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    pub(super) const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    pub(super) const ENVELOPED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.3");
    pub(super) const ENCRYPTED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.6");

    pub(super) const KEY_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.1");
    pub(super) const SHROUDED_KEY_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.2");
    pub(super) const CERT_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.3");
    pub(super) const SAFE_CONTENTS_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.6");
    pub(super) const X509_CERTIFICATE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.22.1");
    pub(super) const LOCAL_KEY_ID: Oid = Oid::new_unwrap("1.2.840.113549.1.9.21");

    pub(super) const PBE_SHA1_RC4_128: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.1");
    pub(super) const PBE_SHA1_RC4_40: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.2");
    pub(super) const PBE_SHA1_3DES: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.3");
    pub(super) const PBE_SHA1_2DES: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.4");
    pub(super) const PBE_SHA1_RC2_128: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.5");
    pub(super) const PBE_SHA1_RC2_40: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.6");

    pub(super) const PBES2: Oid = Oid::new_unwrap("1.2.840.113549.1.5.13");
    pub(super) const PBKDF2: Oid = Oid::new_unwrap("1.2.840.113549.1.5.12");
    pub(super) const PBMAC1: Oid = Oid::new_unwrap("1.2.840.113549.1.5.14");
    pub(super) const PBE_MD5_DES: Oid = Oid::new_unwrap("1.2.840.113549.1.5.3");
    pub(super) const PBE_SHA1_DES: Oid = Oid::new_unwrap("1.2.840.113549.1.5.10");

    pub(super) const HMAC_SHA1: Oid = Oid::new_unwrap("1.2.840.113549.2.7");
    pub(super) const HMAC_SHA224: Oid = Oid::new_unwrap("1.2.840.113549.2.8");
    pub(super) const HMAC_SHA256: Oid = Oid::new_unwrap("1.2.840.113549.2.9");
    pub(super) const HMAC_SHA384: Oid = Oid::new_unwrap("1.2.840.113549.2.10");
    pub(super) const HMAC_SHA512: Oid = Oid::new_unwrap("1.2.840.113549.2.11");

    pub(super) const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
    pub(super) const SHA224: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.4");
    pub(super) const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub(super) const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    pub(super) const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
    pub(super) const MD5: Oid = Oid::new_unwrap("1.2.840.113549.2.5");
    pub(super) const SHA3_224: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.7");
    pub(super) const SHA3_256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.8");
    pub(super) const SHA3_384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.9");
    pub(super) const SHA3_512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.10");

    pub(super) const AES128_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.2");
    pub(super) const AES192_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.22");
    pub(super) const AES256_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.42");
    pub(super) const DES_EDE3_CBC: Oid = Oid::new_unwrap("1.2.840.113549.3.7");
    pub(super) const DES_CBC: Oid = Oid::new_unwrap("1.3.14.3.2.7");
    pub(super) const RC2_CBC: Oid = Oid::new_unwrap("1.2.840.113549.3.2");
    pub(super) const CAMELLIA128_CBC: Oid = Oid::new_unwrap("1.2.392.200011.61.1.1.1.2");
    pub(super) const CAMELLIA192_CBC: Oid = Oid::new_unwrap("1.2.392.200011.61.1.1.1.3");
    pub(super) const CAMELLIA256_CBC: Oid = Oid::new_unwrap("1.2.392.200011.61.1.1.1.4");

    /// Names of OIDs met in the wild, for error messages about what is not supported.
    pub(super) fn name(oid: &Oid) -> Option<&'static str> {
        Some(match *oid {
            SIGNED_DATA => "signedData, public-key integrity mode",
            ENVELOPED_DATA => "envelopedData, public-key privacy mode",
            PBE_SHA1_RC4_128 => "pbeWithSHAAnd128BitRC4",
            PBE_SHA1_RC4_40 => "pbeWithSHAAnd40BitRC4",
            PBMAC1 => "PBMAC1, RFC 9579",
            PBE_MD5_DES => "pbeWithMD5AndDES-CBC",
            PBE_SHA1_DES => "pbeWithSHA1AndDES-CBC",
            MD5 => "MD5",
            SHA3_224 => "SHA3-224",
            SHA3_256 => "SHA3-256",
            SHA3_384 => "SHA3-384",
            SHA3_512 => "SHA3-512",
            DES_CBC => "DES-CBC",
            RC2_CBC => "RC2-CBC",
            CAMELLIA128_CBC => "Camellia-128-CBC",
            CAMELLIA192_CBC => "Camellia-192-CBC",
            CAMELLIA256_CBC => "Camellia-256-CBC",
            _ => return None,
        })
    }
}

/// What a PFX holds, in file order. Each item carries its `localKeyID` attribute, if any.
#[derive(Default)]
pub(crate) struct Contents {
    pub(crate) certificates: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// PKCS#8 `PrivateKeyInfo` DER, already checked to parse.
    pub(crate) keys: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Decodes a PFX, checking its MAC when it has one and decrypting what is encrypted.
pub(crate) fn decode(der: &[u8], password: Option<&str>) -> Result<Contents> {
    decode_with(
        der,
        Secret::candidates(password),
        matches!(password, None | Some("")),
    )
}

fn decode_with(der: &[u8], secrets: Vec<Secret>, empty_password: bool) -> Result<Contents> {
    let mut ctx = Ctx {
        secrets,
        empty_password,
        contents: Contents::default(),
    };

    check_not_truncated(der)?;
    let top = single(der, "the outer PFX structure")?;
    let fields = children(top, Tag::Sequence, "the PFX SEQUENCE")?;
    let (version, auth_safe, mac_data) = match fields.as_slice() {
        [v, a] => (*v, *a, None),
        [v, a, m] => (*v, *a, Some(*m)),
        other => {
            return Err(BundleError::malformed_pfx(
                "the PFX SEQUENCE",
                format!("expected 2 or 3 fields, found {}", other.len()),
            ))
        }
    };
    let version = uint(version, "the PFX version")?;
    if version != 3 {
        return Err(BundleError::malformed_pfx(
            "the PFX version",
            format!("version {version}, expected 3"),
        ));
    }

    let (content_type, content) = content_info(auth_safe, "authSafe")?;
    if content_type != oid::DATA {
        return Err(unsupported("authSafe content type", &content_type));
    }
    let auth_safe_bytes = octets(explicit(content, "authSafe content")?, "authSafe content")?;

    if let Some(mac_data) = mac_data {
        // Decrypt with whichever encoding of the password the MAC accepted first: files are
        // written with one password throughout.
        let winner = ctx.verify_mac(mac_data, auth_safe_bytes)?;
        ctx.secrets.swap(0, winner);
    }

    let auth_safe = single(auth_safe_bytes, "AuthenticatedSafe")?;
    for (i, info) in children(auth_safe, Tag::Sequence, "AuthenticatedSafe")?
        .into_iter()
        .enumerate()
    {
        let loc = format!("AuthenticatedSafe item #{}", i + 1);
        let (content_type, content) = content_info(info, &loc)?;
        let content = explicit(content, &loc)?;
        match content_type {
            oid::DATA => {
                let bytes = octets(content, &loc)?;
                ctx.safe_contents(single(bytes, &loc)?, &loc, 0)?;
            }
            oid::ENCRYPTED_DATA => {
                let bytes = ctx.encrypted_data(content, &loc)?;
                ctx.safe_contents(single(&bytes, &loc)?, &loc, 0)?;
            }
            other => return Err(unsupported("content type", &other)),
        }
    }
    Ok(ctx.contents)
}

struct Ctx {
    /// Candidate encodings of the password, the one the MAC accepted first.
    secrets: Vec<Secret>,
    empty_password: bool,
    contents: Contents,
}

impl Ctx {
    fn wrong_password(&self, check: PasswordCheck) -> BundleError {
        BundleError::WrongPassword {
            check,
            empty_password_tried: self.empty_password,
        }
    }

    /// Returns the index of the password candidate the MAC accepts.
    fn verify_mac(&self, mac_data: AnyRef<'_>, data: &[u8]) -> Result<usize> {
        const LOC: &str = "MacData";
        let fields = children(mac_data, Tag::Sequence, LOC)?;
        let (digest_info, salt, iterations) = match fields.as_slice() {
            [d, s] => (*d, *s, 1),
            [d, s, i] => (*d, *s, uint(*i, "MacData iterations")?),
            other => {
                return Err(BundleError::malformed_pfx(
                    LOC,
                    format!("expected 2 or 3 fields, found {}", other.len()),
                ))
            }
        };
        let [algorithm, digest] = children(digest_info, Tag::Sequence, "MacData digest")?[..]
        else {
            return Err(BundleError::malformed_pfx(
                "MacData digest",
                "expected an algorithm and a digest",
            ));
        };
        let (algorithm, _) = algorithm_identifier(algorithm, "MacData digest algorithm")?;
        let hash = match algorithm {
            oid::SHA1 => Hash::Sha1,
            oid::SHA224 => Hash::Sha224,
            oid::SHA256 => Hash::Sha256,
            oid::SHA384 => Hash::Sha384,
            oid::SHA512 => Hash::Sha512,
            other => return Err(unsupported("MAC algorithm", &other)),
        };
        let digest = octets(digest, "MacData digest")?;
        let salt = octets(salt, "MacData salt")?;
        check_iterations(iterations, "MacData iterations")?;
        for (i, secret) in self.secrets.iter().enumerate() {
            let key = hash.pkcs12_kdf(&secret.bmp, salt, 3, iterations, hash.output_len());
            if hash.hmac_verify(&key, data, digest) {
                return Ok(i);
            }
        }
        Err(self.wrong_password(PasswordCheck::Mac))
    }

    /// `EncryptedData` (RFC 5652 §8) of encrypted SafeContents, decrypted.
    fn encrypted_data(&self, encrypted_data: AnyRef<'_>, loc: &str) -> Result<Vec<u8>> {
        let loc = format!("{loc} (encryptedData)");
        let fields = children(encrypted_data, Tag::Sequence, &loc)?;
        let Some(info) = fields.get(1) else {
            return Err(BundleError::malformed_pfx(&loc, "no EncryptedContentInfo"));
        };
        let info = children(*info, Tag::Sequence, &loc)?;
        let [_content_type, algorithm, ciphertext] = info[..] else {
            return Err(BundleError::malformed_pfx(
                &loc,
                "EncryptedContentInfo lacks its algorithm or its encrypted content",
            ));
        };
        let ciphertext = implicit_octets(ciphertext, &loc)?;
        self.decrypt(
            algorithm,
            &ciphertext,
            PasswordCheck::Certificates,
            &loc,
            |plain| single(plain, "").is_ok_and(|any| any.tag() == Tag::Sequence),
        )
    }

    fn safe_contents(&mut self, safe_contents: AnyRef<'_>, loc: &str, depth: u8) -> Result<()> {
        for (i, bag) in children(safe_contents, Tag::Sequence, loc)?
            .into_iter()
            .enumerate()
        {
            let loc = format!("{loc}, SafeBag #{}", i + 1);
            let (bag_id, value, attributes) = match children(bag, Tag::Sequence, &loc)?[..] {
                [id, value] => (id, value, None),
                [id, value, attributes] => (id, value, Some(attributes)),
                _ => {
                    return Err(BundleError::malformed_pfx(
                        &loc,
                        "expected a bag type, a value and optional attributes",
                    ))
                }
            };
            let bag_id = object_id(bag_id, &loc)?;
            let value = explicit(Some(value), &loc)?;
            let local_key_id = match attributes {
                Some(attributes) => local_key_id(attributes, &loc)?,
                None => None,
            };
            match bag_id {
                oid::KEY_BAG => {
                    let key = value
                        .to_der()
                        .map_err(|e| BundleError::malformed_pfx(&loc, e))?;
                    check_private_key_info(&key)?;
                    self.contents.keys.push((key, local_key_id));
                }
                oid::SHROUDED_KEY_BAG => {
                    let key = self.shrouded_key(value, &loc)?;
                    self.contents.keys.push((key, local_key_id));
                }
                oid::CERT_BAG => {
                    let [cert_type, cert_value] = children(value, Tag::Sequence, &loc)?[..] else {
                        return Err(BundleError::malformed_pfx(&loc, "CertBag needs 2 fields"));
                    };
                    // SDSI certificates exist on paper only; skipping them loses nothing.
                    if object_id(cert_type, &loc)? == oid::X509_CERTIFICATE {
                        let der = octets(explicit(Some(cert_value), &loc)?, &loc)?;
                        self.contents
                            .certificates
                            .push((der.to_vec(), local_key_id));
                    }
                }
                oid::SAFE_CONTENTS_BAG => {
                    if depth >= MAX_NESTING {
                        return Err(BundleError::malformed_pfx(
                            &loc,
                            "SafeContents nested too deeply",
                        ));
                    }
                    self.safe_contents(value, &loc, depth + 1)?;
                }
                // CRL and secret bags, and bag types from the future: nothing a server needs.
                _ => {}
            }
        }
        Ok(())
    }

    /// `EncryptedPrivateKeyInfo` (RFC 5958), decrypted to `PrivateKeyInfo` DER.
    pub(crate) fn shrouded_key(&self, value: AnyRef<'_>, loc: &str) -> Result<Vec<u8>> {
        let [algorithm, ciphertext] = children(value, Tag::Sequence, loc)?[..] else {
            return Err(BundleError::malformed_pfx(
                loc,
                "EncryptedPrivateKeyInfo needs an algorithm and the encrypted key",
            ));
        };
        let ciphertext = octets(ciphertext, loc)?;
        let key = self.decrypt(algorithm, ciphertext, PasswordCheck::KeyBag, loc, |plain| {
            check_private_key_info(plain).is_ok()
        })?;
        Ok(key)
    }

    /// Tries every password candidate; `plausible` tells a right decryption from padding that
    /// happens to look valid under a wrong key.
    fn decrypt(
        &self,
        algorithm: AnyRef<'_>,
        ciphertext: &[u8],
        check: PasswordCheck,
        loc: &str,
        plausible: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>> {
        let scheme = Scheme::parse(algorithm, loc)?;
        let mut tried = Vec::new();
        for secret in &self.secrets {
            let (key, iv) = match &scheme {
                Scheme::Pkcs12 {
                    cipher,
                    salt,
                    iterations,
                } => {
                    let key =
                        Hash::Sha1.pkcs12_kdf(&secret.bmp, salt, 1, *iterations, cipher.key_len());
                    let iv =
                        Hash::Sha1.pkcs12_kdf(&secret.bmp, salt, 2, *iterations, cipher.iv_len());
                    (key, iv)
                }
                Scheme::Pbes2 {
                    prf,
                    salt,
                    iterations,
                    key_len,
                    iv,
                    ..
                } => {
                    // PBES2 takes the password as plain bytes, so both empty candidates are one.
                    if tried.contains(&secret.utf8) {
                        continue;
                    }
                    tried.push(secret.utf8.clone());
                    (
                        prf.pbkdf2(&secret.utf8, salt, *iterations, *key_len),
                        iv.to_vec(),
                    )
                }
            };
            if let Some(plain) = scheme.cipher().decrypt(&key, &iv, ciphertext) {
                if plausible(&plain) {
                    return Ok(plain);
                }
            }
        }
        Err(self.wrong_password(check))
    }
}

enum Scheme<'a> {
    /// RFC 7292 appendix C: the PKCS#12 KDF with SHA-1 derives key and IV.
    Pkcs12 {
        cipher: Cipher,
        salt: &'a [u8],
        iterations: u32,
    },
    /// RFC 8018 PBES2 with PBKDF2.
    Pbes2 {
        prf: Hash,
        salt: &'a [u8],
        iterations: u32,
        key_len: usize,
        cipher: Cipher,
        iv: &'a [u8],
    },
}

impl<'a> Scheme<'a> {
    fn cipher(&self) -> Cipher {
        match self {
            Scheme::Pkcs12 { cipher, .. } | Scheme::Pbes2 { cipher, .. } => *cipher,
        }
    }

    fn parse(algorithm: AnyRef<'a>, loc: &str) -> Result<Self> {
        let loc = format!("{loc}, encryption algorithm");
        let (id, params) = algorithm_identifier(algorithm, &loc)?;
        let params = params.ok_or_else(|| BundleError::malformed_pfx(&loc, "no parameters"))?;
        let pkcs12_cipher = match id {
            oid::PBE_SHA1_3DES => Some(Cipher::DesEde3),
            oid::PBE_SHA1_2DES => Some(Cipher::DesEde2),
            oid::PBE_SHA1_RC2_128 => Some(Cipher::Rc2 { key_len: 16 }),
            oid::PBE_SHA1_RC2_40 => Some(Cipher::Rc2 { key_len: 5 }),
            oid::PBES2 => None,
            other => return Err(unsupported("encryption algorithm", &other)),
        };
        if let Some(cipher) = pkcs12_cipher {
            let [salt, iterations] = children(params, Tag::Sequence, &loc)?[..] else {
                return Err(BundleError::malformed_pfx(
                    &loc,
                    "expected a salt and an iteration count",
                ));
            };
            let iterations = uint(iterations, &loc)?;
            check_iterations(iterations, &loc)?;
            return Ok(Scheme::Pkcs12 {
                cipher,
                salt: octets(salt, &loc)?,
                iterations,
            });
        }

        let [kdf, encryption] = children(params, Tag::Sequence, &loc)?[..] else {
            return Err(BundleError::malformed_pfx(
                &loc,
                "PBES2 needs a KDF and an encryption scheme",
            ));
        };
        let (kdf_id, kdf_params) = algorithm_identifier(kdf, &loc)?;
        if kdf_id != oid::PBKDF2 {
            return Err(unsupported("PBES2 key derivation function", &kdf_id));
        }
        let kdf_params =
            kdf_params.ok_or_else(|| BundleError::malformed_pfx(&loc, "no PBKDF2 parameters"))?;
        let kdf_fields = children(kdf_params, Tag::Sequence, &loc)?;
        let [salt, iterations, optional @ ..] = &kdf_fields[..] else {
            return Err(BundleError::malformed_pfx(
                &loc,
                "PBKDF2 needs a salt and an iteration count",
            ));
        };
        if salt.tag() != Tag::OctetString {
            return Err(BundleError::malformed_pfx(
                &loc,
                "only an explicit PBKDF2 salt is supported",
            ));
        }
        let salt = octets(*salt, &loc)?;
        let iterations = uint(*iterations, &loc)?;
        check_iterations(iterations, &loc)?;
        let mut key_len = None;
        let mut prf = Hash::Sha1;
        for field in optional {
            match field.tag() {
                Tag::Integer => key_len = Some(uint(*field, &loc)? as usize),
                Tag::Sequence => {
                    let (prf_id, _) = algorithm_identifier(*field, &loc)?;
                    prf = match prf_id {
                        oid::HMAC_SHA1 => Hash::Sha1,
                        oid::HMAC_SHA224 => Hash::Sha224,
                        oid::HMAC_SHA256 => Hash::Sha256,
                        oid::HMAC_SHA384 => Hash::Sha384,
                        oid::HMAC_SHA512 => Hash::Sha512,
                        other => return Err(unsupported("PBKDF2 PRF", &other)),
                    };
                }
                _ => {
                    return Err(BundleError::malformed_pfx(
                        &loc,
                        "unexpected PBKDF2 parameter",
                    ))
                }
            }
        }

        let (enc_id, enc_params) = algorithm_identifier(encryption, &loc)?;
        let cipher = match enc_id {
            oid::AES128_CBC => Cipher::Aes128,
            oid::AES192_CBC => Cipher::Aes192,
            oid::AES256_CBC => Cipher::Aes256,
            oid::DES_EDE3_CBC => Cipher::DesEde3,
            other => return Err(unsupported("PBES2 encryption scheme", &other)),
        };
        let iv = enc_params
            .map(|p| octets(p, &loc))
            .transpose()?
            .filter(|iv| iv.len() == cipher.iv_len())
            .ok_or_else(|| BundleError::malformed_pfx(&loc, "missing or wrong-sized IV"))?;
        let key_len = key_len.unwrap_or(cipher.key_len());
        if key_len != cipher.key_len() {
            return Err(BundleError::malformed_pfx(
                &loc,
                format!("PBKDF2 key length {key_len} does not fit the cipher"),
            ));
        }
        Ok(Scheme::Pbes2 {
            prf,
            salt,
            iterations,
            key_len,
            cipher,
            iv,
        })
    }
}

/// Decrypts a bare `EncryptedPrivateKeyInfo` (what `openssl pkcs8 -topk8` writes as DER).
#[cfg(test)]
pub(crate) fn decrypt_private_key(der: &[u8], password: Option<&str>) -> Result<Vec<u8>> {
    let ctx = Ctx {
        secrets: Secret::candidates(password),
        empty_password: matches!(password, None | Some("")),
        contents: Contents::default(),
    };
    ctx.shrouded_key(
        single(der, "EncryptedPrivateKeyInfo")?,
        "EncryptedPrivateKeyInfo",
    )
}

/// A cut-short download or copy is the most common broken PFX; say so plainly.
fn check_not_truncated(der: &[u8]) -> Result<()> {
    let Ok(mut reader) = SliceReader::new(der) else {
        return Ok(());
    };
    let Ok(header) = der::Header::decode(&mut reader) else {
        return Ok(());
    };
    let needed = u32::from(reader.position()) as usize + u32::from(header.length) as usize;
    if needed > der.len() {
        return Err(BundleError::malformed_pfx(
            "the outer PFX structure",
            format!(
                "truncated: the file has {} bytes but its outer SEQUENCE declares {needed}",
                der.len()
            ),
        ));
    }
    Ok(())
}

fn check_private_key_info(der: &[u8]) -> Result<()> {
    pkcs8::PrivateKeyInfo::try_from(der)
        .map(|_| ())
        .map_err(|e| BundleError::MalformedPrivateKey {
            origin: crate::Origin::Pkcs12,
            format: "PKCS#8",
            detail: e.to_string(),
        })
}

fn check_iterations(iterations: u32, loc: &str) -> Result<()> {
    if iterations > MAX_ITERATIONS {
        return Err(BundleError::malformed_pfx(
            loc,
            format!("iteration count {iterations} exceeds the limit of {MAX_ITERATIONS}"),
        ));
    }
    Ok(())
}

fn unsupported(what: &'static str, id: &Oid) -> BundleError {
    BundleError::UnsupportedAlgorithm {
        what,
        oid: id.to_string(),
        name: oid::name(id),
    }
}

/// Exactly one TLV spanning all of `bytes`.
fn single<'a>(bytes: &'a [u8], loc: &str) -> Result<AnyRef<'a>> {
    AnyRef::from_der(bytes).map_err(|e| BundleError::malformed_pfx(loc, e))
}

/// The elements of a constructed value of tag `tag`.
fn children<'a>(any: AnyRef<'a>, tag: Tag, loc: &str) -> Result<Vec<AnyRef<'a>>> {
    if any.tag() != tag {
        return Err(BundleError::malformed_pfx(
            loc,
            format!("expected {tag}, found {}", any.tag()),
        ));
    }
    let mut reader =
        SliceReader::new(any.value()).map_err(|e| BundleError::malformed_pfx(loc, e))?;
    let mut items = Vec::new();
    while !reader.is_finished() {
        items.push(AnyRef::decode(&mut reader).map_err(|e| BundleError::malformed_pfx(loc, e))?);
    }
    Ok(items)
}

/// The single element inside `[0] EXPLICIT`.
fn explicit<'a>(any: Option<AnyRef<'a>>, loc: &str) -> Result<AnyRef<'a>> {
    let expected = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N0,
    };
    let any = any.ok_or_else(|| BundleError::malformed_pfx(loc, "content is missing"))?;
    match children(any, expected, loc)?[..] {
        [inner] => Ok(inner),
        _ => Err(BundleError::malformed_pfx(
            loc,
            "[0] must hold exactly one value",
        )),
    }
}

/// `[0] IMPLICIT OCTET STRING`, primitive or (as BER encoders write it) constructed from pieces.
fn implicit_octets(any: AnyRef<'_>, loc: &str) -> Result<Vec<u8>> {
    match any.tag() {
        Tag::ContextSpecific {
            constructed: false,
            number: TagNumber::N0,
        } => Ok(any.value().to_vec()),
        Tag::ContextSpecific {
            constructed: true,
            number: TagNumber::N0,
        } => {
            let mut out = Vec::new();
            for piece in children(any, any.tag(), loc)? {
                out.extend_from_slice(octets(piece, loc)?);
            }
            Ok(out)
        }
        other => Err(BundleError::malformed_pfx(
            loc,
            format!("expected the encrypted content as [0], found {other}"),
        )),
    }
}

fn octets<'a>(any: AnyRef<'a>, loc: &str) -> Result<&'a [u8]> {
    if any.tag() != Tag::OctetString {
        return Err(BundleError::malformed_pfx(
            loc,
            format!("expected OCTET STRING, found {}", any.tag()),
        ));
    }
    Ok(any.value())
}

fn uint(any: AnyRef<'_>, loc: &str) -> Result<u32> {
    any.decode_as::<u32>()
        .map_err(|e| BundleError::malformed_pfx(loc, e))
}

fn object_id(any: AnyRef<'_>, loc: &str) -> Result<Oid> {
    any.decode_as::<Oid>()
        .map_err(|e| BundleError::malformed_pfx(loc, e))
}

/// `ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY OPTIONAL }`.
fn content_info<'a>(any: AnyRef<'a>, loc: &str) -> Result<(Oid, Option<AnyRef<'a>>)> {
    match children(any, Tag::Sequence, loc)?[..] {
        [content_type] => Ok((object_id(content_type, loc)?, None)),
        [content_type, content] => Ok((object_id(content_type, loc)?, Some(content))),
        _ => Err(BundleError::malformed_pfx(
            loc,
            "ContentInfo needs a type and a content",
        )),
    }
}

/// `AlgorithmIdentifier`, with absent and NULL parameters both read as `None`.
fn algorithm_identifier<'a>(any: AnyRef<'a>, loc: &str) -> Result<(Oid, Option<AnyRef<'a>>)> {
    match children(any, Tag::Sequence, loc)?[..] {
        [id] => Ok((object_id(id, loc)?, None)),
        [id, params] => Ok((object_id(id, loc)?, (!params.is_null()).then_some(params))),
        _ => Err(BundleError::malformed_pfx(
            loc,
            "AlgorithmIdentifier needs an OID and parameters",
        )),
    }
}

/// The `localKeyID` among a bag's attributes, which ties a key to its certificate.
fn local_key_id(attributes: AnyRef<'_>, loc: &str) -> Result<Option<Vec<u8>>> {
    let loc = format!("{loc}, attributes");
    for attribute in children(attributes, Tag::Set, &loc)? {
        let [id, values] = children(attribute, Tag::Sequence, &loc)?[..] else {
            return Err(BundleError::malformed_pfx(
                &loc,
                "an attribute needs a type and values",
            ));
        };
        if object_id(id, &loc)? == oid::LOCAL_KEY_ID {
            if let Some(value) = children(values, Tag::Set, &loc)?.first() {
                return Ok(Some(octets(*value, &loc)?.to_vec()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use base64::Engine as _;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::PrivatePkcs8KeyDer;

    use super::*;

    fn data(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn key_vault_pfx() -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../shared/fixtures/keyvault-recordings/recording_can_get_a_certificates_secret_in_pkcs_12_format.json",
        );
        let recording: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let value = recording["Entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["ResponseBody"]["contentType"] == "application/x-pkcs12")
            .and_then(|e| e["ResponseBody"]["value"].as_str())
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap()
    }

    fn zero_length() -> Secret {
        Secret {
            bmp: Vec::new(),
            utf8: Vec::new(),
        }
    }

    fn bmp_empty() -> Secret {
        Secret {
            bmp: vec![0, 0],
            utf8: Vec::new(),
        }
    }

    #[test]
    fn key_vault_mac_needs_the_zero_length_password() {
        let pfx = key_vault_pfx();
        assert!(decode_with(&pfx, vec![zero_length()], true).is_ok());
        assert!(matches!(
            decode_with(&pfx, vec![bmp_empty()], true),
            Err(BundleError::WrongPassword {
                check: PasswordCheck::Mac,
                ..
            })
        ));
    }

    #[test]
    fn openssl_empty_password_mac_needs_the_bmp_terminator() {
        let pfx = data("empty-password.pfx");
        assert!(decode_with(&pfx, vec![bmp_empty()], true).is_ok());
        assert!(decode_with(&pfx, vec![zero_length()], true).is_err());
    }

    #[test]
    fn pbes2_decrypts_with_every_hmac_prf() {
        let expected = PrivatePkcs8KeyDer::from_pem_slice(&data("leaf-rsa.key.pem")).unwrap();
        for prf in [
            "hmacWithSHA1",
            "hmacWithSHA256",
            "hmacWithSHA384",
            "hmacWithSHA512",
        ] {
            let encrypted = data(&format!("key-pbes2-{prf}.der"));
            let key = decrypt_private_key(&encrypted, Some("test-password"))
                .unwrap_or_else(|e| panic!("{prf}: {e}"));
            assert_eq!(key, expected.secret_pkcs8_der(), "{prf}");
        }
    }

    #[test]
    fn pbes2_with_a_wrong_password_is_a_wrong_password() {
        let encrypted = data("key-pbes2-hmacWithSHA256.der");
        assert!(matches!(
            decrypt_private_key(&encrypted, Some("not-the-password")),
            Err(BundleError::WrongPassword {
                check: PasswordCheck::KeyBag,
                empty_password_tried: false,
            })
        ));
    }

    #[test]
    fn the_local_key_id_ties_the_key_to_its_certificate() {
        let contents = decode(&key_vault_pfx(), None).unwrap();
        assert_eq!(contents.keys.len(), 1);
        assert_eq!(contents.keys[0].1.as_deref(), Some(&[1u8, 0, 0, 0][..]));
        assert_eq!(contents.certificates.len(), 1);
        assert_eq!(
            contents.certificates[0].1.as_deref(),
            Some(&[1u8, 0, 0, 0][..])
        );
    }
}
