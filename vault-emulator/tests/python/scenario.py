"""Drives the vault emulator with the official Azure SDK for Python, an independent client.

Usage: python scenario.py EMULATOR_JSON NO_ACCESS_CLIENT_ID

EMULATOR_JSON is the emulator.json the emulator wrote (vault_url, identity_endpoint, ca_file,
client_id, app_service_endpoint, app_service_header). NO_ACCESS_CLIENT_ID names an identity that
exists but has no access policy. Prints one "ok: ..." line per step and "SCENARIO PASSED" at the
end; any failure raises (non-zero exit).
"""

import base64
import datetime
import hashlib
import json
import os
import sys

info = json.load(open(sys.argv[1]))
no_access_client_id = sys.argv[2]

# IMDS override honoured by azure-identity (through MSAL): the host part of the token URL.
identity_base = info["identity_endpoint"].split("/metadata/")[0]
os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = identity_base
for var in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET"):
    os.environ.pop(var, None)
os.environ["REQUESTS_CA_BUNDLE"] = info["ca_file"]

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError  # noqa: E402
from azure.identity import ManagedIdentityCredential  # noqa: E402
from azure.keyvault.certificates import (  # noqa: E402
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
)
from azure.keyvault.secrets import SecretClient  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

API_VERSION = "2025-07-01"
VAULT = info["vault_url"]


def ok(message):
    print(f"ok: {message}", flush=True)


def clients(credential):
    common = dict(
        verify_challenge_resource=False,
        api_version=API_VERSION,
        connection_verify=info["ca_file"],
    )
    return CertificateClient(VAULT, credential, **common), SecretClient(VAULT, credential, **common)


def make_pfx(common_name, password):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pfx = pkcs12.serialize_key_and_certificates(
        b"imported", key, cert, None, serialization.BestAvailableEncryption(password)
    )
    return pfx, cert


def open_secret_pfx(value):
    key, cert, extra = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
    assert key is not None and cert is not None, "PFX holds a key and a certificate"
    return key, cert


credential = ManagedIdentityCredential(client_id=info["client_id"])
certificates, secrets = clients(credential)

# 1. Import a password-protected PFX.
pfx, local_cert = make_pfx("imported.example", b"S3cret!")
imported = certificates.import_certificate("imported", pfx, password="S3cret!")
der = local_cert.public_bytes(serialization.Encoding.DER)
assert imported.cer == der, "the imported certificate is the one sent"
assert imported.properties.x509_thumbprint == hashlib.sha1(der).digest(), "x5t is SHA-1 of the DER"
assert imported.policy.issuer_name == "Unknown", imported.policy.issuer_name
ok("import password-protected PFX")

secret = secrets.get_secret("imported")
assert secret.properties.content_type == "application/x-pkcs12", secret.properties.content_type
assert secret.properties.managed is True
assert secret.properties.key_id and "/keys/imported/" in secret.properties.key_id
key, cert = open_secret_pfx(secret.value)
assert cert.public_bytes(serialization.Encoding.DER) == der
ok("imported certificate's secret is a password-less PFX")

# 2. Create a self-signed certificate and poll until done.
policy = CertificatePolicy(
    issuer_name="Self",
    subject="CN=created.example",
    san_dns_names=["created.example", "www.created.example"],
    validity_in_months=12,
)
poller = certificates.begin_create_certificate("created", policy, _polling_interval=0.3)
created = poller.result()
assert created.name == "created", created
operation = certificates.get_certificate_operation("created")
assert operation.status == "completed", operation.status
assert operation.csr, "the operation carries the CSR"
ok("create self-signed certificate and poll the pending operation to completion")

fetched = certificates.get_certificate("created")
assert fetched.policy.subject == "CN=created.example", fetched.policy.subject
assert fetched.policy.san_dns_names == ["created.example", "www.created.example"], fetched.policy.san_dns_names
secret = secrets.get_secret("created")
assert secret.id == fetched.secret_id, (secret.id, fetched.secret_id)
key, cert = open_secret_pfx(secret.value)
assert cert.public_bytes(serialization.Encoding.DER) == fetched.cer
assert key.key_size == 2048
sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
assert sans == ["created.example", "www.created.example"], sans
ok("created certificate's secret opens with pkcs12 password None")

# 3. PEM content type.
pem_policy = CertificatePolicy(
    issuer_name="Self", subject="CN=pem.example", content_type=CertificateContentType.pem
)
certificates.begin_create_certificate("created-pem", pem_policy, _polling_interval=0.3).result()
pem = secrets.get_secret("created-pem")
assert pem.properties.content_type == "application/x-pem-file"
assert pem.value.startswith("-----BEGIN PRIVATE KEY-----"), pem.value[:40]
serialization.load_pem_private_key(pem.value.encode(), None)
x509.load_pem_x509_certificate(pem.value.encode())
ok("PEM secret: unencrypted PKCS#8 key then certificate")

# 4. List versions.
pfx2, _ = make_pfx("imported.example", b"other")
certificates.import_certificate("imported", pfx2, password="other")
versions = list(certificates.list_properties_of_certificate_versions("imported"))
assert len(versions) == 2, versions
assert all(len(v.version) == 32 for v in versions)
secret_versions = list(secrets.list_properties_of_secret_versions("imported"))
assert len(secret_versions) == 2, secret_versions
assert {v.version for v in versions} == {v.version for v in secret_versions}
policy_back = certificates.get_certificate_policy("imported")
assert policy_back.content_type == "application/x-pkcs12", policy_back.content_type
ok("list certificate and secret versions")

secrets.set_secret("plain", "one")
secrets.set_secret("plain", "two")
assert secrets.get_secret("plain").value == "two"
assert len(list(secrets.list_properties_of_secret_versions("plain"))) == 2
ok("set and read a plain secret")

# 5. Disabled secret.
secrets.set_secret("disabled", "x", enabled=False)
try:
    secrets.get_secret("disabled")
    raise AssertionError("a disabled secret must not be readable")
except HttpResponseError as e:
    assert e.status_code == 403, e.status_code
    assert e.error.code == "Forbidden", e.error.code
    assert e.error.innererror["code"] == "SecretDisabled", e.error.innererror
ok("disabled secret is 403 SecretDisabled")

# 6. 404s.
try:
    secrets.get_secret("does-not-exist")
    raise AssertionError("missing secret must be 404")
except ResourceNotFoundError as e:
    assert e.status_code == 404 and e.error.code == "SecretNotFound", e.error.code
try:
    certificates.get_certificate("does-not-exist")
    raise AssertionError("missing certificate must be 404")
except ResourceNotFoundError as e:
    assert e.status_code == 404 and e.error.code == "CertificateNotFound", e.error.code
ok("404 SecretNotFound and CertificateNotFound")

# 7. An identity without access gets 403 AccessDenied.
denied_credential = ManagedIdentityCredential(client_id=no_access_client_id)
_, denied_secrets = clients(denied_credential)
try:
    denied_secrets.get_secret("plain")
    raise AssertionError("an identity without access must get 403")
except HttpResponseError as e:
    assert e.status_code == 403, e.status_code
    assert e.error.code == "Forbidden", e.error.code
    assert e.error.innererror["code"] == "AccessDenied", e.error.innererror
    assert "does not have secrets get permission" in e.error.message, e.error.message
ok("identity without an access policy gets 403 AccessDenied")

# 8. An unsupported api-version is Key Vault's 400.
bad_secrets = SecretClient(VAULT, credential, verify_challenge_resource=False, api_version="7.3",
                           connection_verify=info["ca_file"])
try:
    bad_secrets.get_secret("plain")
    raise AssertionError("api-version 7.3 must be refused")
except HttpResponseError as e:
    assert e.status_code == 400 and e.error.code == "BadParameter", (e.status_code, e.error.code)
ok("unsupported api-version is 400 BadParameter")

# 9. The App Service-style endpoint.
os.environ["IDENTITY_ENDPOINT"] = info["app_service_endpoint"]
os.environ["IDENTITY_HEADER"] = info["app_service_header"]
app_credential = ManagedIdentityCredential(client_id=info["client_id"])
_, app_secrets = clients(app_credential)
assert app_secrets.get_secret("plain").value == "two"
ok("App Service managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER)")

print("SCENARIO PASSED")
