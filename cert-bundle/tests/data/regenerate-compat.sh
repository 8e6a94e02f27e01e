#!/usr/bin/env bash
# Regenerates the PKCS#12 compatibility fixtures in ./compat: the same kind of certificate and key
# written by every PFX producer the gateway is expected to meet. `tests/compat.rs` checks each file
# against the leaf certificate and fingerprint written beside it; it needs none of these tools.
#
# Needs:
#   - `openssl` 3.x (the CLI; `-legacy` needs the legacy provider, which OpenSSL 3 ships);
#   - a JDK's `keytool` (any JDK >= 11; set KEYTOOL=/path/to/keytool to choose one, otherwise
#     `keytool` on PATH or the first one under /usr/lib/jvm is used);
#   - python3 with the `cryptography` package (>= 38, for PKCS12 encryption_builder); set PYTHON
#     to choose the interpreter, e.g. PYTHON=target/python-venv/bin/python.
#
# The PKI (all valid for 100 years, keys committed on purpose: they protect nothing):
#
#   root CA (RSA-2048)  ->  intermediate CA (RSA-2048)  ->  localhost leaf, one per key type:
#                                                            rsa2048 rsa3072 rsa4096 p256 p384
#
# Files, all with password "test-password" unless their name says otherwise:
#   leaf-KIND.pem, leaf-KIND.key.pem, leaf-KIND.sha256   the leaf, its PKCS#8 key, its fingerprint
#   root.pem, intermediate.pem                           the chain
#   openssl3-KIND.pfx          `openssl pkcs12 -export` defaults (PBES2/PBKDF2-SHA256/AES-256, SHA-256 MAC)
#   openssl-legacy-KIND.pfx    `-legacy` (RC2-40 certificates, 3DES key, SHA-1 MAC)
#   openssl3-*.pfx             a few option variants (unencrypted, no MAC iterations, ...)
#   keytool-*.p12              Java keytool keystores (PBES2/AES-256 and HmacPBESHA256 MAC by default)
#   python-*.p12               Python cryptography's serialize_key_and_certificates, each
#                              encryption choice
#   unsupported-*.pfx          algorithms the reader does not implement (RC4, MD5, DES, Camellia,
#                              SHA-3 MAC, PBMAC1): each must fail with an error naming it
set -euo pipefail
cd "$(dirname "$0")"

PASS=test-password
DAYS=36500
PYTHON=${PYTHON:-python3}
if [ -z "${KEYTOOL:-}" ]; then
    KEYTOOL=$(command -v keytool || ls /usr/lib/jvm/*/bin/keytool 2>/dev/null | head -n1 || true)
fi
[ -x "$KEYTOOL" ] || { echo "no keytool found; install a JDK or set KEYTOOL" >&2; exit 1; }
"$PYTHON" -c 'import cryptography' || { echo "$PYTHON lacks the cryptography package" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p compat
cd compat
rm -f ./*.pem ./*.pfx ./*.p12 ./*.sha256

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

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/root.key" -out root.pem \
    -days $DAYS -subj "/O=cert-bundle compat/CN=Compat Root CA" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -new -newkey rsa:2048 -nodes -keyout "$work/int.key" -out "$work/int.csr" \
    -subj "/O=cert-bundle compat/CN=Compat Intermediate CA"
openssl x509 -req -in "$work/int.csr" -CA root.pem -CAkey "$work/root.key" -CAcreateserial \
    -days $DAYS -sha256 -extfile "$work/ca.ext" -out intermediate.pem
cat intermediate.pem root.pem >"$work/chain.pem"

KINDS="rsa2048 rsa3072 rsa4096 p256 p384"
for kind in $KINDS; do
    case $kind in
    rsa*) openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${kind#rsa}" -out "leaf-$kind.key.pem" ;;
    p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "leaf-$kind.key.pem" ;;
    p384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "leaf-$kind.key.pem" ;;
    esac
    openssl req -new -key "leaf-$kind.key.pem" -out "$work/leaf-$kind.csr" \
        -subj "/O=cert-bundle compat/CN=localhost"
    openssl x509 -req -in "$work/leaf-$kind.csr" -CA intermediate.pem -CAkey "$work/int.key" \
        -CAcreateserial -days $DAYS -sha256 -extfile "$work/leaf.ext" -out "leaf-$kind.pem"
done

# --- OpenSSL 3 ---------------------------------------------------------------------------------
export_pfx() { # KIND OUT [openssl pkcs12 options...]
    local kind=$1 out=$2
    shift 2
    openssl pkcs12 -export -in "leaf-$kind.pem" -inkey "leaf-$kind.key.pem" \
        -certfile "$work/chain.pem" -name localhost -out "$out" "$@"
}
for kind in $KINDS; do
    export_pfx "$kind" "openssl3-$kind.pfx" -passout pass:$PASS
    export_pfx "$kind" "openssl-legacy-$kind.pfx" -legacy -passout pass:$PASS
done
# Unencrypted, MAC-less (a plain keyBag), and unencrypted but MAC-protected with an empty password.
export_pfx p384 openssl3-p384-unencrypted-nomac.pfx -keypbe NONE -certpbe NONE -nomac -passout pass:
export_pfx rsa3072 openssl3-rsa3072-unencrypted-emptypass.pfx -keypbe NONE -certpbe NONE -passout pass:
# One iteration everywhere, and a MacData without its (optional) iterations field.
export_pfx p256 openssl3-p256-noiter-nomaciter.pfx -noiter -nomaciter -passout pass:$PASS
# 3DES key in PBES2, certificates not encrypted.
export_pfx rsa2048 openssl3-rsa2048-pbes2-3des.pfx -keypbe DES-EDE3-CBC -certpbe NONE -passout pass:$PASS

# What OpenSSL can still be asked to write but the gateway does not implement: each file must fail
# with an error that names the algorithm. RC4 and the PKCS#5 v1 PBEs need the legacy provider.
export_pfx p256 unsupported-openssl-legacy-rc4-key.pfx -legacy -keypbe PBE-SHA1-RC4-128 -passout pass:$PASS
export_pfx p256 unsupported-openssl-legacy-md5-des-key.pfx -legacy -keypbe PBE-MD5-DES -passout pass:$PASS
export_pfx p256 unsupported-openssl-pbes2-des-key.pfx -legacy -keypbe DES-CBC -passout pass:$PASS
export_pfx p256 unsupported-openssl-pbes2-camellia-key.pfx -keypbe CAMELLIA-256-CBC -passout pass:$PASS
export_pfx p256 unsupported-openssl-md5-mac.pfx -macalg md5 -passout pass:$PASS
export_pfx p256 unsupported-openssl-sha3-mac.pfx -macalg sha3-256 -passout pass:$PASS

# --- Java keytool ------------------------------------------------------------------------------
kt() { "$KEYTOOL" -J-Duser.language=en "$@"; }
# Self-signed keypairs straight from keytool; the certificate is exported beside the keystore.
kt -genkeypair -storetype PKCS12 -keystore keytool-genkeypair-rsa2048.p12 -storepass $PASS \
    -alias server -keyalg RSA -keysize 2048 -sigalg SHA256withRSA -validity $DAYS \
    -dname "O=cert-bundle compat, CN=localhost" -ext "SAN=dns:localhost"
kt -genkeypair -storetype PKCS12 -keystore keytool-genkeypair-p256.p12 -storepass $PASS \
    -alias server -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA -validity $DAYS \
    -dname "O=cert-bundle compat, CN=localhost" -ext "SAN=dns:localhost"
for name in keytool-genkeypair-rsa2048 keytool-genkeypair-p256; do
    kt -exportcert -rfc -keystore "$name.p12" -storepass $PASS -alias server -file "$name.pem"
done
# OpenSSL PFX with a chain, re-written by keytool: default and legacy (-Dkeystore.pkcs12.legacy).
for kind in rsa2048 p384; do
    kt -importkeystore -srckeystore "openssl3-$kind.pfx" -srcstoretype PKCS12 -srcstorepass $PASS \
        -destkeystore "keytool-import-$kind.p12" -deststoretype PKCS12 -deststorepass $PASS -noprompt
done
kt -J-Dkeystore.pkcs12.legacy -importkeystore -srckeystore openssl3-rsa4096.pfx -srcstoretype PKCS12 \
    -srcstorepass $PASS -destkeystore keytool-import-legacy-rsa4096.p12 -deststoretype PKCS12 \
    -deststorepass $PASS -noprompt
# Certificates not encrypted and no MAC (the key stays encrypted with the password).
kt -J-Dkeystore.pkcs12.certProtectionAlgorithm=NONE -J-Dkeystore.pkcs12.macAlgorithm=NONE \
    -importkeystore -srckeystore openssl3-p256.pfx -srcstoretype PKCS12 -srcstorepass $PASS \
    -destkeystore keytool-import-nomac-p256.p12 -deststoretype PKCS12 -deststorepass $PASS -noprompt

# --- Python cryptography -----------------------------------------------------------------------
"$PYTHON" - "$PASS" <<'PY'
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.hazmat.primitives.serialization.pkcs12 import PBES

password = sys.argv[1].encode()

def load(kind):
    with open(f"leaf-{kind}.key.pem", "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(f"leaf-{kind}.pem", "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return key, cert

cas = []
for name in ("intermediate.pem", "root.pem"):
    with open(name, "rb") as f:
        cas.append(x509.load_pem_x509_certificate(f.read()))

def write(name, kind, encryption, with_chain=True):
    key, cert = load(kind)
    data = pkcs12.serialize_key_and_certificates(
        b"localhost", key, cert, cas if with_chain else None, encryption)
    with open(name, "wb") as f:
        f.write(data)

def builder():
    return serialization.PrivateFormat.PKCS12.encryption_builder()

for kind in ("rsa2048", "rsa3072", "rsa4096", "p256", "p384"):
    write(f"python-best-{kind}.p12", kind, serialization.BestAvailableEncryption(password))
write("python-noencryption-rsa2048.p12", "rsa2048", serialization.NoEncryption())
write("python-noencryption-p256-nochain.p12", "p256", serialization.NoEncryption(), with_chain=False)

algorithms = {"3des": PBES.PBESv1SHA1And3KeyTripleDESCBC, "aes256": PBES.PBESv2SHA256AndAES256CBC}
macs = {"defaultmac": None, "sha1mac": hashes.SHA1(), "sha256mac": hashes.SHA256()}
for alg_name, alg in algorithms.items():
    for mac_name, mac in macs.items():
        b = builder().key_cert_algorithm(alg)
        if mac is not None:
            b = b.hmac_hash(mac)
        write(f"python-{alg_name}-{mac_name}-rsa2048.p12", "rsa2048", b.build(password))
    for rounds in (1, 2048, 50000):
        b = builder().key_cert_algorithm(alg).kdf_rounds(rounds)
        write(f"python-{alg_name}-rounds{rounds}-p256.p12", "p256", b.build(password))
# The builder's defaults.
write("python-builder-defaults-p384.p12", "p384", builder().build(password))
PY

# A PBMAC1 (RFC 9579) MAC, as OpenSSL >= 3.4 writes with `-pbmac1_pbkdf2`: OpenSSL 3.0 cannot, so
# the MacData of an OpenSSL 3 file is replaced by a correctly computed PBMAC1 one
# (PBKDF2-HMAC-SHA256 over the UTF-8 password, HMAC-SHA256; macSalt "NOT USED", 1 iteration).
"$PYTHON" - "$PASS" <<'PY'
import sys
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body

def read(buf, pos):
    """(tag, body start, end) of the TLV at pos."""
    tag, n = buf[pos], buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    return tag, pos, pos + n

def children(buf, start, end):
    out = []
    while start < end:
        t, s, e = read(buf, start)
        out.append((t, start, s, e))
        start = e
    return out

seq = lambda *items: tlv(0x30, b"".join(items))
oid = lambda der_hex: bytes.fromhex(der_hex)
integer = lambda v: tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big"))
NULL = b"\x05\x00"
PBMAC1 = oid("06092a864886f70d01050e")
PBKDF2 = oid("06092a864886f70d01050c")
HMAC_SHA256 = oid("06082a864886f70d0209")

pfx = open("openssl3-p256.pfx", "rb").read()
_, s, e = read(pfx, 0)
version, auth_safe, _mac = children(pfx, s, e)
_content_type, explicit = children(pfx, auth_safe[2], auth_safe[3])
_, s, e = read(pfx, explicit[2])  # the OCTET STRING inside [0]
data = pfx[s:e]  # the authSafe content the MAC covers

password, salt, iterations = sys.argv[1].encode(), bytes(range(1, 17)), 2048
key = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(password)
h = hmac.HMAC(key, hashes.SHA256())
h.update(data)
params = seq(
    seq(PBKDF2, seq(tlv(0x04, salt), integer(iterations), integer(32), seq(HMAC_SHA256, NULL))),
    seq(HMAC_SHA256, NULL),
)
mac_data = seq(seq(seq(PBMAC1, params), tlv(0x04, h.finalize())), tlv(0x04, b"NOT USED"), integer(1))
out = seq(pfx[version[1]:version[3]], pfx[auth_safe[1]:auth_safe[3]], mac_data)
open("unsupported-pbmac1.pfx", "wb").write(out)
PY

# --- fingerprints, as OpenSSL prints them ("sha256 Fingerprint=AB:CD:...") ---------------------
for pem in leaf-*.pem keytool-genkeypair-*.pem; do
    case $pem in *.key.pem) continue ;; esac
    openssl x509 -in "$pem" -noout -fingerprint -sha256 >"${pem%.pem}.sha256"
done

rm -f ./*.srl
echo "regenerated PKCS#12 compatibility fixtures in $(pwd)"
