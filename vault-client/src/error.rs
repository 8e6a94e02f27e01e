//! [`VaultError`] and its [`ErrorClass`].
//!
//! Every message is one line that names the vault and the secret and says what to do. None ever
//! carries an access token, a secret value or key material: details come from our own wording,
//! from Key Vault's `error.message` (flattened to one line), or from connection errors.

use crate::id::IdentifierError;

/// What a failure means for whoever serves the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Someone must change something (permissions, the reference, the secret, the identity):
    /// retrying will not help. Application Gateway disables the listener on these.
    Configuration,
    /// It may go away by itself (network, throttling, Key Vault or identity endpoint down): keep
    /// serving what is there and try again later.
    Transient,
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorClass::Configuration => "configuration",
            ErrorClass::Transient => "transient",
        })
    }
}

/// Why a certificate could not be fetched from Key Vault.
///
/// `vault` fields are the vault's `host[:port]`; `secret` fields are the secret's name, with
/// `/{version}` when one was asked for or resolved.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The secret identifier is malformed.
    #[error(transparent)]
    Identifier(#[from] IdentifierError),

    /// The client could not be built: e.g. `[vault] ca_file` holds no usable certificate.
    #[error("cannot set up the Key Vault client: {detail}")]
    Setup {
        /// What is wrong.
        detail: String,
    },

    /// The vault's host is neither in a known Azure cloud nor in this client's allowed hosts.
    #[error(
        "vault {vault} is not a Key Vault host of an Azure cloud and not in [vault] allowed_hosts; \
         refusing to send it a token (reading secret {secret})"
    )]
    HostNotAllowed {
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
    },

    /// A bearer token would have gone over plain http.
    #[error(
        "refusing to send a bearer token to {url} over plain http: Key Vault is only reached over https"
    )]
    InsecureUrl {
        /// The URL (never carries a token).
        url: String,
    },

    /// The vault's `WWW-Authenticate` challenge names a resource that the vault's host does not
    /// belong to, so the token it asks for would be for another service.
    #[error(
        "vault {vault} sent an authentication challenge for resource {resource:?}, which does not match \
         its domain; no token was sent (reading secret {secret}). Check that the identifier points at a \
         real Key Vault (https://aka.ms/azsdk/blog/vault-uri), or add the host to [vault] allowed_hosts \
         if it is a development vault"
    )]
    ChallengeMismatch {
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// The challenge's `resource` or `scope`.
        resource: String,
    },

    /// A 401 without a usable `Bearer` challenge.
    #[error("vault {vault} answered 401 without a usable Bearer challenge (reading secret {secret}): {detail}")]
    InvalidChallenge {
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// What is wrong with the challenge.
        detail: String,
    },

    /// No token could be had from the identity.
    #[error("no token for vault {vault} (reading secret {secret}): {source}")]
    Identity {
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// The identity's error; its class decides this one's.
        #[source]
        source: Box<identity::IdentityError>,
    },

    /// The vault refused a fresh token twice (401).
    #[error(
        "identity {identity} was refused by vault {vault} (401, reading secret {secret}): {detail}"
    )]
    Unauthorized {
        /// The identity (its kind, endpoint and id; never a token).
        identity: String,
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// Key Vault's error code and message.
        detail: String,
    },

    /// 403 `AccessDenied`: an access-policy vault without `get` on secrets for this identity.
    #[error(
        "identity {identity} lacks the `get` permission on secrets of vault {vault} (access-policy model), \
         so it cannot read secret {secret}: grant it with `az keyvault set-policy --name {vault_name} \
         --object-id <the identity's principal id> --secret-permissions get` (Key Vault said: {detail})"
    )]
    AccessDenied {
        /// The identity.
        identity: String,
        /// The vault.
        vault: String,
        /// The vault's name, for the `az` command line.
        vault_name: String,
        /// The secret.
        secret: String,
        /// Key Vault's message.
        detail: String,
    },

    /// 403 `ForbiddenByRbac`: an RBAC vault without a role that reads secrets.
    #[error(
        "identity {identity} has no Azure RBAC role that reads secret {secret} of vault {vault}: assign it \
         the \"Key Vault Secrets User\" role on the vault or the secret (`az role assignment create --role \
         \"Key Vault Secrets User\" --assignee <the identity's principal id> --scope <the vault's resource \
         id>`); new assignments can take a few minutes to apply (Key Vault said: {detail})"
    )]
    ForbiddenByRbac {
        /// The identity.
        identity: String,
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// Key Vault's message.
        detail: String,
    },

    /// 403 `ForbiddenByFirewall`: the vault's network rules refuse this client's address.
    #[error(
        "vault {vault}'s firewall refused this client (reading secret {secret}): add the client's address to \
         the vault's firewall (`az keyvault network-rule add --name {vault_name} --ip-address <address>`) or \
         reach the vault through a private endpoint (Key Vault said: {detail})"
    )]
    ForbiddenByFirewall {
        /// The vault.
        vault: String,
        /// The vault's name, for the `az` command line.
        vault_name: String,
        /// The secret.
        secret: String,
        /// Key Vault's message, which names the refused address.
        detail: String,
    },

    /// 403 `SecretDisabled`: the (latest) version of the secret is disabled. Key Vault does not
    /// fall back to an older version.
    #[error(
        "secret {secret} of vault {vault} is disabled: enable the secret version (`az keyvault secret \
         set-attributes --vault-name {vault_name} --name {name} --version <version> --enabled true`, or enable \
         the certificate version) or point the reference at an enabled version (Key Vault said: {detail})"
    )]
    SecretDisabled {
        /// The vault.
        vault: String,
        /// The vault's name, for the `az` command line.
        vault_name: String,
        /// The secret (with version if any).
        secret: String,
        /// The secret's name alone.
        name: String,
        /// Key Vault's message.
        detail: String,
    },

    /// Another 403.
    #[error(
        "vault {vault} refused identity {identity} reading secret {secret} (403 {code}): {detail}"
    )]
    Forbidden {
        /// The identity.
        identity: String,
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// The innermost error code.
        code: String,
        /// Key Vault's message.
        detail: String,
    },

    /// 404: no such secret (or certificate, or version) in the vault.
    #[error(
        "secret {secret} was not found in vault {vault} (404 {code}): check the name and version in the \
         reference, or recover it if it was deleted (Key Vault said: {detail})"
    )]
    NotFound {
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// `SecretNotFound`, `CertificateNotFound`, …
        code: String,
        /// Key Vault's message.
        detail: String,
    },

    /// Any other unexpected HTTP status; 408, 429 and 5xx are transient (after the retries), the
    /// rest configuration errors.
    #[error("vault {vault} answered {status} for secret {secret}{}: {detail}", attempts_note(*.attempts))]
    Status {
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// The HTTP status.
        status: u16,
        /// How many times it was asked.
        attempts: u32,
        /// Key Vault's code and message, or the start of a non-JSON body.
        detail: String,
    },

    /// The vault could not be reached or did not answer in time, after the retries.
    #[error("vault {vault} could not be reached for secret {secret}{}: {detail}", attempts_note(*.attempts))]
    Unavailable {
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// How many times it was tried.
        attempts: u32,
        /// `timed out after …`, the connection error and its causes.
        detail: String,
        /// `true` when the last failure was a timeout.
        timed_out: bool,
    },

    /// The vault answered 200 with a body that is not a Key Vault secret.
    #[error("vault {vault} sent a response for secret {secret} that cannot be used: {detail}")]
    InvalidResponse {
        /// The vault.
        vault: String,
        /// The secret.
        secret: String,
        /// What is wrong (never the value).
        detail: String,
    },

    /// The secret's value is not a certificate with its private key: the certificate's key is
    /// not exportable (HSM-backed keys never are).
    #[error(
        "secret {secret} of vault {vault} holds a certificate without its private key: \
         non-exportable / HSM-protected keys are not supported; create the certificate with an exportable \
         key (policy key_props.exportable = true, kty RSA or EC)"
    )]
    NoPrivateKey {
        /// The vault.
        vault: String,
        /// The secret, with its version.
        secret: String,
    },

    /// The secret's content type is neither PKCS#12 nor PEM, and the value is not either.
    #[error(
        "secret {secret} of vault {vault} has content type {content_type:?}, which is not a certificate: \
         expected application/x-pkcs12 or application/x-pem-file"
    )]
    UnsupportedContentType {
        /// The vault.
        vault: String,
        /// The secret, with its version.
        secret: String,
        /// The content type as Key Vault returned it.
        content_type: String,
    },

    /// The secret's value does not decode as what its content type says.
    #[error("secret {secret} of vault {vault} ({content_type}) is not a usable certificate bundle: {detail}")]
    InvalidSecretValue {
        /// The vault.
        vault: String,
        /// The secret, with its version.
        secret: String,
        /// The content type, or how the value was read when there was none.
        content_type: String,
        /// What is wrong (a [`cert_bundle::BundleError`] message; never key bytes).
        detail: String,
    },
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl VaultError {
    /// Whether someone must change something ([`ErrorClass::Configuration`]) or it may pass by
    /// itself ([`ErrorClass::Transient`]).
    pub fn class(&self) -> ErrorClass {
        use VaultError::*;
        match self {
            Identity { source, .. } if source.is_transient() => ErrorClass::Transient,
            Status { status, .. } if is_transient_status(*status) => ErrorClass::Transient,
            Unavailable { .. } | InvalidResponse { .. } => ErrorClass::Transient,
            Identifier(_)
            | Setup { .. }
            | HostNotAllowed { .. }
            | InsecureUrl { .. }
            | ChallengeMismatch { .. }
            | InvalidChallenge { .. }
            | Identity { .. }
            | Unauthorized { .. }
            | AccessDenied { .. }
            | ForbiddenByRbac { .. }
            | ForbiddenByFirewall { .. }
            | SecretDisabled { .. }
            | Forbidden { .. }
            | NotFound { .. }
            | Status { .. }
            | NoPrivateKey { .. }
            | UnsupportedContentType { .. }
            | InvalidSecretValue { .. } => ErrorClass::Configuration,
        }
    }

    /// `true` for [`ErrorClass::Transient`].
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// The Key Vault error code behind it (the innermost one), when the vault sent one, e.g.
    /// `SecretNotFound`, `ForbiddenByRbac`, `SecretDisabled`.
    pub fn code(&self) -> Option<&str> {
        use VaultError::*;
        match self {
            AccessDenied { .. } => Some("AccessDenied"),
            ForbiddenByRbac { .. } => Some("ForbiddenByRbac"),
            ForbiddenByFirewall { .. } => Some("ForbiddenByFirewall"),
            SecretDisabled { .. } => Some("SecretDisabled"),
            Forbidden { code, .. } | NotFound { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// 408, 429 and 5xx: worth another try.
pub(crate) fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}
