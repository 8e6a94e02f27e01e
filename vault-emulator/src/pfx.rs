//! Writes a PKCS#12 file the way Key Vault exports a certificate's secret: no password (the
//! zero-length password, as Windows writes it, for the MAC and both encryptions),
//! pbeWithSHAAnd3-KeyTripleDES-CBC for the shrouded key bag and for the certificate bags,
//! HMAC-SHA1 MAC, 2000 iterations, `localKeyID` `01 00 00 00` on the key and the leaf.
//!
//! (The `p12` crate encrypts certificate bags with RC2-40, which OpenSSL 3 refuses without
//! `-legacy`, so this small DER writer stands in for it.)

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockEncryptMut as _, KeyIvInit as _};
use hmac::{Hmac, Mac as _};
use sha1::{Digest as _, Sha1};

const ITERATIONS: u32 = 2000;

const OID_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
const OID_ENCRYPTED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 6];
const OID_PBE_SHA1_3DES: &[u64] = &[1, 2, 840, 113549, 1, 12, 1, 3];
const OID_SHROUDED_KEY_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 2];
const OID_CERT_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 3];
const OID_X509_CERTIFICATE: &[u64] = &[1, 2, 840, 113549, 1, 9, 22, 1];
const OID_FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113549, 1, 9, 20];
const OID_LOCAL_KEY_ID: &[u64] = &[1, 2, 840, 113549, 1, 9, 21];
const OID_SHA1: &[u64] = &[1, 3, 14, 3, 2, 26];

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

fn octets(bytes: &[u8]) -> Vec<u8> {
    tlv(0x04, bytes)
}

fn explicit0(content: &[u8]) -> Vec<u8> {
    tlv(0xa0, content)
}

fn integer(value: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = value
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut push = |mut arc: u64| {
        let mut chunk = vec![(arc & 0x7f) as u8];
        arc >>= 7;
        while arc > 0 {
            chunk.push(0x80 | (arc & 0x7f) as u8);
            arc >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    };
    push(arcs[0] * 40 + arcs[1]);
    for arc in &arcs[2..] {
        push(*arc);
    }
    tlv(0x06, &body)
}

/// RFC 7292 appendix B.2 key derivation with SHA-1 (`id` 1: key, 2: IV, 3: MAC key).
/// `password` is the already-encoded password; here always zero-length.
fn kdf(password: &[u8], salt: &[u8], id: u8, iterations: u32, size: usize) -> Vec<u8> {
    const U: usize = 20;
    const V: usize = 64;
    let fill = |input: &[u8]| -> Vec<u8> {
        if input.is_empty() {
            return Vec::new();
        }
        let len = V * input.len().div_ceil(V);
        input.iter().copied().cycle().take(len).collect()
    };
    let d = vec![id; V];
    let mut i = fill(salt);
    i.extend(fill(password));
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let mut a = Sha1::new()
            .chain_update(&d)
            .chain_update(&i)
            .finalize()
            .to_vec();
        for _ in 1..iterations {
            a = Sha1::digest(&a).to_vec();
        }
        out.extend_from_slice(&a[..U.min(size - out.len())]);
        if out.len() >= size {
            break;
        }
        let b: Vec<u8> = a.iter().copied().cycle().take(V).collect();
        for block in i.chunks_mut(V) {
            let mut carry = 1u16;
            for (x, y) in block.iter_mut().zip(b.iter()).rev() {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out
}

fn encrypt_3des(data: &[u8], salt: &[u8]) -> Vec<u8> {
    let key = kdf(&[], salt, 1, ITERATIONS, 24);
    let iv = kdf(&[], salt, 2, ITERATIONS, 8);
    cbc::Encryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
        .expect("3DES takes a 24-byte key and an 8-byte IV")
        .encrypt_padded_vec_mut::<Pkcs7>(data)
}

fn pbe_algorithm(salt: &[u8]) -> Vec<u8> {
    seq(&[
        &oid(OID_PBE_SHA1_3DES),
        &seq(&[&octets(salt), &integer(ITERATIONS)]),
    ])
}

fn bag(bag_oid: &[u64], value: &[u8], attributes: &[Vec<u8>]) -> Vec<u8> {
    let attrs: Vec<&[u8]> = attributes.iter().map(Vec::as_slice).collect();
    if attributes.is_empty() {
        seq(&[&oid(bag_oid), &explicit0(value)])
    } else {
        seq(&[&oid(bag_oid), &explicit0(value), &set(&attrs)])
    }
}

fn local_key_id() -> Vec<u8> {
    seq(&[&oid(OID_LOCAL_KEY_ID), &set(&[&octets(&[1, 0, 0, 0])])])
}

fn friendly_name(name: &str) -> Vec<u8> {
    let bmp: Vec<u8> = name.encode_utf16().flat_map(u16::to_be_bytes).collect();
    seq(&[&oid(OID_FRIENDLY_NAME), &set(&[&tlv(0x1e, &bmp)])])
}

/// A password-less PKCS#12: `chain` is leaf first (DER), `key_pkcs8` the leaf's PKCS#8 key.
pub(crate) fn write(chain: &[Vec<u8>], key_pkcs8: &[u8], name: &str) -> Vec<u8> {
    let random = |n: usize| {
        let mut salt = vec![0u8; n];
        getrandom::getrandom(&mut salt).expect("the operating system's random source failed");
        salt
    };

    let key_salt = random(8);
    let shrouded = seq(&[
        &pbe_algorithm(&key_salt),
        &octets(&encrypt_3des(key_pkcs8, &key_salt)),
    ]);
    let key_bag = bag(
        OID_SHROUDED_KEY_BAG,
        &shrouded,
        &[local_key_id(), friendly_name(name)],
    );
    let key_contents = seq(&[&key_bag]);

    let cert_bags: Vec<Vec<u8>> = chain
        .iter()
        .enumerate()
        .map(|(index, der)| {
            let value = seq(&[&oid(OID_X509_CERTIFICATE), &explicit0(&octets(der))]);
            let attributes = if index == 0 {
                vec![local_key_id()]
            } else {
                Vec::new()
            };
            bag(OID_CERT_BAG, &value, &attributes)
        })
        .collect();
    let cert_bag_refs: Vec<&[u8]> = cert_bags.iter().map(Vec::as_slice).collect();
    let cert_contents = seq(&cert_bag_refs);
    let cert_salt = random(8);
    let encrypted = encrypt_3des(&cert_contents, &cert_salt);
    let encrypted_data = seq(&[
        &integer(0),
        &seq(&[
            &oid(OID_DATA),
            &pbe_algorithm(&cert_salt),
            &tlv(0x80, &encrypted),
        ]),
    ]);

    let auth_safe = seq(&[
        &seq(&[&oid(OID_DATA), &explicit0(&octets(&key_contents))]),
        &seq(&[&oid(OID_ENCRYPTED_DATA), &explicit0(&encrypted_data)]),
    ]);

    let mac_salt = random(20);
    let mac_key = kdf(&[], &mac_salt, 3, ITERATIONS, 20);
    let mut mac = Hmac::<Sha1>::new_from_slice(&mac_key).expect("HMAC takes keys of any length");
    mac.update(&auth_safe);
    let digest = mac.finalize().into_bytes();
    let mac_data = seq(&[
        &seq(&[&seq(&[&oid(OID_SHA1), &[0x05, 0x00]]), &octets(&digest)]),
        &octets(&mac_salt),
        &integer(ITERATIONS),
    ]);

    seq(&[
        &integer(3),
        &seq(&[&oid(OID_DATA), &explicit0(&octets(&auth_safe))]),
        &mac_data,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_matches_the_rfc_7292_derivation_for_a_known_vector() {
        // OpenSSL `PKCS12_key_gen_uni` with the BMP password "smeg" (00 73 00 6d 00 65 00 67
        // 00 00), salt 0a 58 cf 64 53 0d 82 3f, id 1, 1 iteration, 24 bytes (from the test
        // vectors in the PKCS#12 implementations of BouncyCastle and `p12`).
        let password = [0, b's', 0, b'm', 0, b'e', 0, b'g', 0, 0];
        let salt = [0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f];
        let key = kdf(&password, &salt, 1, 1, 24);
        assert_eq!(
            hex::encode(key),
            "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3"
        );
    }

    #[test]
    fn oids_and_integers_encode_as_der() {
        assert_eq!(hex::encode(oid(OID_SHA1)), "06052b0e03021a");
        assert_eq!(hex::encode(integer(2000)), "020207d0");
        assert_eq!(hex::encode(integer(3)), "020103");
        assert_eq!(hex::encode(integer(128)), "02020080");
    }
}
