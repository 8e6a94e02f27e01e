#!/usr/bin/env bash
# Regenerates the throw-away test PKI under this directory with the `openssl` CLI (OpenSSL 3).
#
#   root CA  ->  intermediate CA  ->  "localhost" leaf (RSA-2048)
#                                 ->  "localhost" leaf (ECDSA P-256)
#
# Every certificate is valid for 100 years so the files never need regenerating because of time.
# The keys are committed on purpose: they protect nothing and the tests must be reproducible.
# CA keys are thrown away. Tests compute expected thumbprints from the PEM certificates, so
# regenerating changes no test code.
set -euo pipefail
cd "$(dirname "$0")"

PASS=test-password
DAYS=36500
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rm -f ./*.pem ./*.pfx ./*.der ./*.txt

# --- the PKI -----------------------------------------------------------------------------------
cat >"$work/ca.ext" <<'EXT'
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
cat >"$work/leaf.ext" <<'EXT'
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/root.key" -out root-ca.pem \
    -days $DAYS -subj "/O=cert-bundle tests/CN=Test Root CA" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign"

openssl req -new -newkey rsa:2048 -nodes -keyout "$work/int.key" -out "$work/int.csr" \
    -subj "/O=cert-bundle tests/CN=Test Intermediate CA"
openssl x509 -req -in "$work/int.csr" -CA root-ca.pem -CAkey "$work/root.key" -CAcreateserial \
    -days $DAYS -sha256 -extfile "$work/ca.ext" -out intermediate-ca.pem

# RSA leaf; `genpkey` writes PKCS#8.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out leaf-rsa.key.pem
openssl req -new -key leaf-rsa.key.pem -out "$work/leaf-rsa.csr" -subj "/O=cert-bundle tests/CN=localhost"
openssl x509 -req -in "$work/leaf-rsa.csr" -CA intermediate-ca.pem -CAkey "$work/int.key" \
    -CAcreateserial -days $DAYS -sha256 -extfile "$work/leaf.ext" -out leaf-rsa.pem

# ECDSA P-256 leaf; the key is kept as SEC1 ("EC PRIVATE KEY").
openssl ecparam -name prime256v1 -genkey -noout -out "$work/leaf-ec.key"
openssl ec -in "$work/leaf-ec.key" -out "$work/leaf-ec.sec1.pem"
openssl req -new -key "$work/leaf-ec.sec1.pem" -out "$work/leaf-ec.csr" -subj "/O=cert-bundle tests/CN=localhost"
openssl x509 -req -in "$work/leaf-ec.csr" -CA intermediate-ca.pem -CAkey "$work/int.key" \
    -CAcreateserial -days $DAYS -sha256 -extfile "$work/leaf.ext" -out leaf-ec.pem

# --- PEM bundles -------------------------------------------------------------------------------
cat leaf-rsa.pem intermediate-ca.pem root-ca.pem leaf-rsa.key.pem >bundle-rsa-pkcs8.pem
openssl rsa -in leaf-rsa.key.pem -traditional -out "$work/leaf-rsa.pkcs1.pem"
grep -q "BEGIN RSA PRIVATE KEY" "$work/leaf-rsa.pkcs1.pem"
cat "$work/leaf-rsa.pkcs1.pem" leaf-rsa.pem intermediate-ca.pem >bundle-rsa-pkcs1.pem
grep -q "BEGIN EC PRIVATE KEY" "$work/leaf-ec.sec1.pem"
cat leaf-ec.pem intermediate-ca.pem root-ca.pem "$work/leaf-ec.sec1.pem" >bundle-ec-sec1.pem
# Root first, leaf last, key in the middle: the decoder must put the leaf first.
cat root-ca.pem intermediate-ca.pem leaf-rsa.key.pem leaf-rsa.pem >bundle-rsa-reversed.pem

# --- PKCS#12 -----------------------------------------------------------------------------------
cat intermediate-ca.pem root-ca.pem >"$work/chain.pem"
export_pfx() { # OUT [openssl pkcs12 options...]
    local out=$1
    shift
    openssl pkcs12 -export -in leaf-rsa.pem -inkey leaf-rsa.key.pem -certfile "$work/chain.pem" \
        -name "localhost" -out "$out" "$@"
}
# OpenSSL 3 default: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for key and certs, SHA-256 MAC.
export_pfx openssl3-default.pfx -passout pass:$PASS
# -legacy: RC2-40 certificates, 3DES key, SHA-1 MAC, PKCS#12 KDF.
export_pfx legacy.pfx -legacy -passout pass:$PASS
# Empty password.
export_pfx empty-password.pfx -passout pass:
# Neither encrypted nor MAC-protected: a plain keyBag next to plain certBags.
export_pfx unencrypted-nomac.pfx -keypbe NONE -certpbe NONE -nomac -passout pass:
# The other PBES2 ciphers and MAC digests.
export_pfx aes128-sha1mac.pfx -keypbe AES-128-CBC -certpbe AES-128-CBC -macalg sha1 -passout pass:$PASS
export_pfx aes192-sha384mac.pfx -keypbe AES-192-CBC -certpbe AES-192-CBC -macalg sha384 -passout pass:$PASS
export_pfx aes256-sha512mac.pfx -keypbe AES-256-CBC -certpbe AES-256-CBC -macalg sha512 -passout pass:$PASS
# PKCS#12 PBEs other than -legacy's pair: 128-bit RC2 and 2-key 3DES.
export_pfx rc2-128-2des.pfx -legacy -certpbe PBE-SHA1-RC2-128 -keypbe PBE-SHA1-2DES -passout pass:$PASS
# EC leaf, certificates only MAC-protected.
openssl pkcs12 -export -in leaf-ec.pem -inkey "$work/leaf-ec.sec1.pem" -certfile "$work/chain.pem" \
    -certpbe NONE -out ec.pfx -passout pass:$PASS
# Certificates only, no key: what a non-exportable Key Vault certificate would give.
openssl pkcs12 -export -nokeys -in leaf-rsa.pem -certfile "$work/chain.pem" -out no-key.pfx -passout pass:$PASS

# The intermediate CA's own key, with the leaf and root as extra certificates: only the
# localKeyID says which certificate the key belongs to (the issuer heuristic would pick the leaf).
cat leaf-rsa.pem root-ca.pem >"$work/others.pem"
openssl pkcs12 -export -in intermediate-ca.pem -inkey "$work/int.key" -certfile "$work/others.pem" \
    -out ca-key-with-issued-leaf.pfx -passout pass:$PASS

# --- PBES2 PRFs, exercised on bare EncryptedPrivateKeyInfo -------------------------------------
for prf in hmacWithSHA1 hmacWithSHA256 hmacWithSHA384 hmacWithSHA512; do
    openssl pkcs8 -topk8 -in leaf-rsa.key.pem -outform DER -v2 aes-256-cbc -v2prf $prf \
        -passout pass:$PASS -out "key-pbes2-$prf.der"
done

# A password-protected PKCS#8 key in PEM, which PEM bundles do not accept.
openssl pkcs8 -topk8 -in leaf-rsa.key.pem -v2 aes-256-cbc -passout pass:$PASS -out leaf-rsa.key.encrypted.pem

# What OpenSSL itself says the thumbprints are ("sha256 Fingerprint=AB:CD:...").
openssl x509 -in leaf-rsa.pem -noout -fingerprint -sha256 >leaf-rsa.sha256.txt
openssl x509 -in leaf-ec.pem -noout -fingerprint -sha256 >leaf-ec.sha256.txt

rm -f ./*.srl
echo "regenerated test PKI in $(pwd)"
