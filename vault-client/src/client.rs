//! [`VaultClient`]: GET a certificate's secret with challenge-based auth, retries and timeouts.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cert_bundle::CertificateBundle;
use identity::{AccessToken, TokenCache, TokenSource};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::challenge::Challenge;
use crate::decode::{self, DecodeError};
use crate::error::{is_transient_status, VaultError};
use crate::id::{is_allowed, normalise_allowed, SecretId};

/// The Key Vault data-plane `api-version` sent with every request. 7.4, 7.5, 7.6 and 2025-07-01
/// all return the same `SecretBundle` shape.
pub const API_VERSION: &str = "7.5";

/// The longest `Retry-After` honoured; longer ones are cut to this, so that one fetch never stalls
/// the caller for long (its own schedule will come back later).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The largest response body read (a secret value is at most 25 KB).
const MAX_BODY: usize = 1 << 20;

/// How transient failures (connect errors, timeouts, 408, 429, 5xx) are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The waits between attempts: at most `delays.len() + 1` attempts. A `Retry-After` (or
    /// `retry-after-ms`) from the vault replaces the wait it falls on, up to [`MAX_RETRY_AFTER`].
    pub delays: Vec<Duration>,
    /// The time limit of each request, from connecting to the end of the body.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 1, 2, 4, 8 and 16 s between attempts (Key Vault's throttling guidance), 30 s per request.
    fn default() -> Self {
        RetryPolicy {
            delays: [1, 2, 4, 8, 16]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry, with the given timeout.
    pub fn no_retry(request_timeout: Duration) -> Self {
        RetryPolicy {
            delays: Vec::new(),
            request_timeout,
        }
    }
}

/// What a [`VaultClient`] needs.
#[derive(Clone)]
pub struct VaultClientConfig {
    /// Where tokens come from (the scope is the one the vault's challenge names).
    pub tokens: Arc<TokenCache>,
    /// PEM certificates to trust besides the public (Mozilla) roots: `[vault] ca_file`'s contents,
    /// e.g. the emulator's CA.
    pub extra_root_pem: Option<Vec<u8>>,
    /// Vault `host:port` entries (or `host` for port 443) accepted besides the Azure clouds'
    /// suffixes, e.g. the emulator's `localhost:8443`. Their challenges are not checked against
    /// the host (a development vault names `https://vault.azure.net` like the real one).
    pub allowed_hosts: Vec<String>,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
}

impl VaultClientConfig {
    /// Public roots only, no extra hosts, the default [`RetryPolicy`].
    pub fn new(tokens: Arc<TokenCache>) -> Self {
        VaultClientConfig {
            tokens,
            extra_root_pem: None,
            allowed_hosts: Vec::new(),
            retry: RetryPolicy::default(),
        }
    }
}

impl fmt::Debug for VaultClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClientConfig")
            .field("tokens", &self.tokens)
            .field(
                "extra_root_pem",
                &self
                    .extra_root_pem
                    .as_ref()
                    .map(|p| format!("{} bytes", p.len())),
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A certificate read from Key Vault, with the secret's metadata.
///
/// `Debug` shows the bundle's thumbprint and chain length, never the key.
#[derive(Debug, Clone)]
pub struct FetchedCertificate {
    /// The identifier asked for, with the version Key Vault returned (so always versioned).
    pub id: SecretId,
    /// The version Key Vault returned.
    pub version: String,
    /// The secret's content type as Key Vault returned it; when it had none, the format the value
    /// was read as (`application/x-pkcs12` or `application/x-pem-file`).
    pub content_type: String,
    /// The chain (leaf first) and private key.
    pub bundle: CertificateBundle,
    /// `attributes.enabled` (`true` when absent).
    pub enabled: bool,
    /// `attributes.nbf`, Unix seconds.
    pub not_before: Option<i64>,
    /// `attributes.exp`, Unix seconds.
    pub expires: Option<i64>,
    /// `true` when the secret backs a Key Vault certificate (its lifetime is managed by it).
    pub managed: bool,
    /// The key's identifier, for secrets that back a certificate.
    pub kid: Option<String>,
}

/// A Key Vault data-plane client. Cloning is cheap; clones share the connection pool and the
/// challenge cache.
#[derive(Clone)]
pub struct VaultClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    tokens: Arc<TokenCache>,
    allowed_hosts: Vec<String>,
    retry: RetryPolicy,
    /// The challenge of each vault (`host[:port]`) that has sent one: later requests to it carry
    /// a token straight away.
    challenges: Mutex<HashMap<String, Challenge>>,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("identity", &self.identity())
            .field("allowed_hosts", &self.inner.allowed_hosts)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// A response read whole.
struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// How one attempt ended, short of a response to interpret.
enum Failure {
    /// Connecting, sending or reading failed; worth another try.
    Transport { detail: String, timed_out: bool },
    /// Not worth another try.
    Final(VaultError),
}

impl From<VaultError> for Failure {
    fn from(e: VaultError) -> Self {
        Failure::Final(e)
    }
}

/// The names an error carries.
struct Ctx<'a> {
    id: &'a SecretId,
    vault: String,
    secret: String,
}

impl<'a> Ctx<'a> {
    fn new(id: &'a SecretId) -> Self {
        let secret = match id.version() {
            Some(v) => format!("{}/{v}", id.name()),
            None => id.name().to_owned(),
        };
        Ctx {
            id,
            vault: id.authority().to_owned(),
            secret,
        }
    }
}

impl VaultClient {
    /// Builds the HTTPS client: rustls with the public roots plus `extra_root_pem`, no redirects,
    /// https only, the configured timeout.
    pub fn new(config: VaultClientConfig) -> Result<VaultClient, VaultError> {
        Self::with_resolve(config, &[])
    }

    /// Like [`new`](Self::new), and connects to the given address for each host instead of asking
    /// DNS (like `curl --resolve`; the URL's port wins when it has one). For split-horizon setups
    /// and for tests that put a real vault name in front of a local server.
    pub fn with_resolve(
        config: VaultClientConfig,
        resolve: &[(&str, SocketAddr)],
    ) -> Result<VaultClient, VaultError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.retry.request_timeout)
            .connect_timeout(config.retry.request_timeout)
            .user_agent(concat!("vault-client/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.extra_root_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| VaultError::Setup {
                    detail: format!(
                        "the extra CA certificates ([vault] ca_file) are not valid PEM: {e}"
                    ),
                })?;
            if certs.is_empty() {
                return Err(VaultError::Setup {
                    detail: "the extra CA file ([vault] ca_file) holds no PEM certificate"
                        .to_owned(),
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        for (host, addr) in resolve {
            builder = builder.resolve(host, *addr);
        }
        let http = builder.build().map_err(|e| VaultError::Setup {
            detail: error_chain(&e),
        })?;
        Ok(VaultClient {
            inner: Arc::new(Inner {
                http,
                tokens: config.tokens,
                allowed_hosts: config
                    .allowed_hosts
                    .iter()
                    .map(|h| normalise_allowed(h))
                    .collect(),
                retry: config.retry,
                challenges: Mutex::default(),
            }),
        })
    }

    /// The identity the client reads with, as its token source describes itself (never a token).
    pub fn identity(&self) -> String {
        self.inner.tokens.source().describe()
    }

    /// Parses `uri` accepting this client's allowed hosts besides the Azure clouds.
    pub fn parse_id(&self, uri: &str) -> Result<SecretId, VaultError> {
        Ok(SecretId::parse_with_allowed_hosts(
            uri,
            &self.inner.allowed_hosts,
        )?)
    }

    /// Reads the secret of `id` (the latest version when it has none) and decodes it into a
    /// certificate bundle.
    ///
    /// `GET {vault}/secrets/{name}[/{version}]?api-version=7.5`. The value is a base64 PKCS#12
    /// (`application/x-pkcs12`, opened with the empty password) or PEM (`application/x-pem-file`);
    /// without a content type the value's form decides. A value without a private key (a
    /// non-exportable or HSM-backed key) is a configuration error.
    pub async fn fetch_certificate(&self, id: &SecretId) -> Result<FetchedCertificate, VaultError> {
        let ctx = Ctx::new(id);
        let response = self.get_secret(&ctx).await?;
        self.certificate_from(&ctx, &response.body)
    }

    async fn get_secret(&self, ctx: &Ctx<'_>) -> Result<RawResponse, VaultError> {
        if ctx.id.cloud().is_none() && !is_allowed(ctx.id.authority(), &self.inner.allowed_hosts) {
            return Err(VaultError::HostNotAllowed {
                vault: ctx.vault.clone(),
                secret: ctx.secret.clone(),
            });
        }
        let url = format!(
            "{}{}?api-version={API_VERSION}",
            ctx.id.vault_url(),
            ctx.id.secret_path()
        );
        let url = Url::parse(&url).map_err(|e| VaultError::InvalidResponse {
            vault: ctx.vault.clone(),
            secret: ctx.secret.clone(),
            detail: format!("cannot build the request URL: {e}"),
        })?;

        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let retry_after;
            let give_up: VaultError;
            match self.get_authorized(&url, ctx).await {
                Ok(response) if response.status.is_success() => return Ok(response),
                Ok(response) => {
                    let error = status_error(ctx, &self.identity(), &response, attempts);
                    if !is_transient_status(response.status.as_u16()) {
                        return Err(error);
                    }
                    retry_after = retry_after_of(&response.headers);
                    give_up = error;
                }
                Err(Failure::Transport { detail, timed_out }) => {
                    retry_after = None;
                    give_up = VaultError::Unavailable {
                        vault: ctx.vault.clone(),
                        secret: ctx.secret.clone(),
                        attempts,
                        detail,
                        timed_out,
                    };
                }
                Err(Failure::Final(error)) => return Err(error),
            }
            let Some(&scheduled) = self.inner.retry.delays.get(attempts as usize - 1) else {
                return Err(give_up);
            };
            let wait = retry_after.map_or(scheduled, |d| d.min(MAX_RETRY_AFTER));
            tracing::warn!(
                vault = %ctx.vault,
                secret = %ctx.secret,
                attempt = attempts,
                "{give_up}; retrying in {wait:?}"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt with challenge-based auth: without a known challenge for the vault the request
    /// goes out without a token, and a 401 challenge is checked, remembered and answered with a
    /// token; a token refused with 401 is dropped and a fresh one tried once.
    async fn get_authorized(&self, url: &Url, ctx: &Ctx<'_>) -> Result<RawResponse, Failure> {
        if url.scheme() != "https" {
            return Err(insecure(url).into());
        }
        let authority = ctx.id.authority().to_owned();
        let cached = self
            .inner
            .challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&authority)
            .cloned();
        let challenge = match cached {
            Some(challenge) => challenge,
            None => {
                let response = self.send(url, None).await?;
                if response.status != StatusCode::UNAUTHORIZED {
                    return Ok(response);
                }
                let challenge = self.accept_challenge(ctx, &response, None)?;
                tracing::debug!(
                    vault = %ctx.vault,
                    scope = %challenge.scope,
                    tenant = challenge.tenant.as_deref().unwrap_or("-"),
                    "Key Vault challenge"
                );
                challenge
            }
        };

        let token = self.token(ctx, &challenge.scope).await?;
        let response = self.send(url, Some(&token)).await?;
        if response.status != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }

        // Refused: the vault may name another scope (or claims); drop the token and try a fresh
        // one, once.
        let challenge = self.accept_challenge(ctx, &response, Some(challenge))?;
        self.inner.tokens.invalidate(&challenge.scope);
        let token = self.token(ctx, &challenge.scope).await?;
        let response = self.send(url, Some(&token)).await?;
        if response.status != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.inner.tokens.invalidate(&challenge.scope);
        Err(Failure::Final(VaultError::Unauthorized {
            identity: self.identity(),
            vault: ctx.vault.clone(),
            secret: ctx.secret.clone(),
            detail: format!(
                "a fresh token for {} was refused: {}",
                challenge.scope,
                describe_body(&response)
            ),
        }))
    }

    /// Parses, checks and remembers the challenge of a 401. With `previous`, a 401 without a
    /// usable challenge keeps the previous one.
    fn accept_challenge(
        &self,
        ctx: &Ctx<'_>,
        response: &RawResponse,
        previous: Option<Challenge>,
    ) -> Result<Challenge, VaultError> {
        let values = response
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let challenge = match (Challenge::parse(values), previous) {
            (Ok(challenge), _) => challenge,
            (Err(_), Some(previous)) => return Ok(previous),
            (Err(detail), None) => {
                return Err(VaultError::InvalidChallenge {
                    vault: ctx.vault.clone(),
                    secret: ctx.secret.clone(),
                    detail,
                })
            }
        };
        let dev_host = is_allowed(ctx.id.authority(), &self.inner.allowed_hosts);
        if !dev_host && !challenge.matches_host(ctx.id.host()) {
            return Err(VaultError::ChallengeMismatch {
                vault: ctx.vault.clone(),
                secret: ctx.secret.clone(),
                resource: challenge.scope,
            });
        }
        self.inner
            .challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ctx.id.authority().to_owned(), challenge.clone());
        Ok(challenge)
    }

    async fn token(&self, ctx: &Ctx<'_>, scope: &str) -> Result<AccessToken, VaultError> {
        self.inner
            .tokens
            .token(scope)
            .await
            .map_err(|source| VaultError::Identity {
                vault: ctx.vault.clone(),
                secret: ctx.secret.clone(),
                source: Box::new(source),
            })
    }

    /// Sends one GET, with the token if given, and reads the whole body.
    async fn send(&self, url: &Url, token: Option<&AccessToken>) -> Result<RawResponse, Failure> {
        let mut request = self
            .inner
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json");
        if let Some(token) = token {
            // Checked again right where the token is attached.
            if url.scheme() != "https" {
                return Err(insecure(url).into());
            }
            request = request.bearer_auth(token.secret());
        }
        let timeout = self.inner.retry.request_timeout;
        let transport = |e: reqwest::Error| Failure::Transport {
            timed_out: e.is_timeout(),
            detail: if e.is_timeout() {
                format!("no answer within {timeout:?} (timed out)")
            } else {
                error_chain(&e)
            },
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Failure::Transport {
                    detail: format!("the response body is larger than {MAX_BODY} bytes"),
                    timed_out: false,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn certificate_from(
        &self,
        ctx: &Ctx<'_>,
        body: &[u8],
    ) -> Result<FetchedCertificate, VaultError> {
        let invalid = |detail: String| VaultError::InvalidResponse {
            vault: ctx.vault.clone(),
            secret: ctx.secret.clone(),
            detail,
        };
        let secret: SecretBundle = serde_json::from_slice(body).map_err(|e| {
            // serde_json's message may quote a value; say only where and what kind of problem.
            invalid(format!(
                "the body is not a Key Vault secret ({:?} JSON error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let version = match (&secret.id, ctx.id.version()) {
            (Some(returned), asked) => {
                let version = version_of(returned, ctx.id.name()).ok_or_else(|| {
                    invalid(format!(
                        "its id {returned:?} is not https://…/secrets/{}/{{32 hex digits}}",
                        ctx.id.name()
                    ))
                })?;
                if let Some(asked) = asked {
                    if asked != version {
                        return Err(invalid(format!(
                            "version {asked} was asked for but {version} was returned"
                        )));
                    }
                }
                version
            }
            (None, Some(asked)) => asked.to_owned(),
            (None, None) => {
                return Err(invalid(
                    "it has no id, so its version is unknown".to_owned(),
                ))
            }
        };
        let id = ctx
            .id
            .with_version(&version)
            .map_err(|e| invalid(e.to_string()))?;
        let named = format!("{}/{version}", ctx.id.name());
        let Some(value) = secret.value.as_deref() else {
            return Err(invalid("it has no value".to_owned()));
        };
        let content_type = secret.content_type.as_deref();
        let (bundle, format) = decode::decode(value, content_type).map_err(|e| match e {
            DecodeError::NoPrivateKey => VaultError::NoPrivateKey {
                vault: ctx.vault.clone(),
                secret: named.clone(),
            },
            DecodeError::Unsupported => VaultError::UnsupportedContentType {
                vault: ctx.vault.clone(),
                secret: named.clone(),
                content_type: content_type.unwrap_or_default().to_owned(),
            },
            DecodeError::Invalid { read_as, detail } => VaultError::InvalidSecretValue {
                vault: ctx.vault.clone(),
                secret: named.clone(),
                content_type: content_type.filter(|c| !c.trim().is_empty()).map_or_else(
                    || format!("no content type, read as {read_as}"),
                    str::to_owned,
                ),
                detail,
            },
        })?;
        let attributes = secret.attributes.unwrap_or_default();
        Ok(FetchedCertificate {
            id,
            version,
            content_type: content_type
                .filter(|c| !c.trim().is_empty())
                .unwrap_or(format.content_type())
                .to_owned(),
            bundle,
            enabled: attributes.enabled.unwrap_or(true),
            not_before: attributes.nbf,
            expires: attributes.exp,
            managed: secret.managed.unwrap_or(false),
            kid: secret.kid,
        })
    }
}

/// A `SecretBundle`; deliberately without `Debug`, since it holds the value.
#[derive(Deserialize)]
struct SecretBundle {
    value: Option<String>,
    id: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    attributes: Option<Attributes>,
    managed: Option<bool>,
    kid: Option<String>,
}

#[derive(Deserialize, Default)]
struct Attributes {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

/// Key Vault's `{"error":{"code","message","innererror":{…}}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
    #[serde(rename = "innererror", alias = "innerError")]
    inner: Option<Box<ErrorDetail>>,
}

/// The codes of an error, outermost first, and its message.
fn error_codes(body: &[u8]) -> Option<(Vec<String>, Option<String>)> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let error = parsed.error?;
    let message = error.message.clone();
    let mut codes = Vec::new();
    let mut current = Some(&error);
    while let Some(e) = current {
        if let Some(code) = e.code.as_deref().filter(|c| !c.is_empty()) {
            codes.push(code.to_owned());
        }
        current = e.inner.as_deref();
    }
    Some((codes, message))
}

/// One line: the message with line breaks folded, cut at a sane length.
fn one_line(text: &str) -> String {
    let folded: String = text
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    const MAX: usize = 600;
    if folded.chars().count() > MAX {
        let cut: String = folded.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        folded
    }
}

/// `code: message` of a Key Vault error body, or what the body is when it is not one (never its
/// contents).
fn describe_body(response: &RawResponse) -> String {
    match error_codes(&response.body) {
        Some((codes, message)) => {
            let codes = if codes.is_empty() {
                String::new()
            } else {
                format!("{}: ", codes.join("/"))
            };
            format!(
                "{codes}{}",
                one_line(message.as_deref().unwrap_or("(no message)"))
            )
        }
        None => {
            let content_type = response
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no content type");
            format!(
                "HTTP {} with a body that is not a Key Vault error ({} bytes, {content_type})",
                response.status,
                response.body.len()
            )
        }
    }
}

/// The error of a non-2xx response.
fn status_error(
    ctx: &Ctx<'_>,
    identity: &str,
    response: &RawResponse,
    attempts: u32,
) -> VaultError {
    let status = response.status.as_u16();
    let (codes, message) = error_codes(&response.body).unwrap_or_default();
    let message = message.unwrap_or_default();
    let detail = describe_body(response);
    let has = |code: &str| codes.iter().any(|c| c.eq_ignore_ascii_case(code));
    let vault = ctx.vault.clone();
    let secret = ctx.secret.clone();
    let vault_name = ctx.id.vault_name().to_owned();
    match status {
        401 => VaultError::Unauthorized {
            identity: identity.to_owned(),
            vault,
            secret,
            detail,
        },
        403 => {
            let lower = message.to_ascii_lowercase();
            if has("ForbiddenByFirewall")
                || lower.contains("client address is not authorized")
                || lower.contains("nsp rules")
            {
                VaultError::ForbiddenByFirewall {
                    vault,
                    vault_name,
                    secret,
                    detail,
                }
            } else if has("ForbiddenByRbac") || lower.contains("caller is not authorized to perform action") {
                VaultError::ForbiddenByRbac {
                    identity: identity.to_owned(),
                    vault,
                    secret,
                    detail,
                }
            } else if has("SecretDisabled") || has("CertificateDisabled") || lower.contains("disabled secret") {
                VaultError::SecretDisabled {
                    vault,
                    vault_name,
                    secret,
                    name: ctx.id.name().to_owned(),
                    detail,
                }
            } else if has("AccessDenied") || lower.contains("does not have secrets get permission") {
                VaultError::AccessDenied {
                    identity: identity.to_owned(),
                    vault,
                    vault_name,
                    secret,
                    detail,
                }
            } else {
                VaultError::Forbidden {
                    identity: identity.to_owned(),
                    vault,
                    secret,
                    code: codes.last().cloned().unwrap_or_else(|| "Forbidden".to_owned()),
                    detail,
                }
            }
        }
        404 => VaultError::NotFound {
            vault,
            secret,
            code: codes.last().cloned().unwrap_or_else(|| "NotFound".to_owned()),
            detail,
        },
        300..=399 => VaultError::Status {
            vault,
            secret,
            status,
            attempts,
            detail: format!(
                "an unexpected redirect{} (Key Vault does not redirect; redirects are not followed)",
                response
                    .headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| format!(" to {l}"))
                    .unwrap_or_default()
            ),
        },
        _ => VaultError::Status {
            vault,
            secret,
            status,
            attempts,
            detail,
        },
    }
}

/// `Retry-After` in seconds, or Azure's `retry-after-ms` / `x-ms-retry-after-ms`.
fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = get(name).and_then(|v| v.parse::<f64>().ok()) {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::from_secs_f64(ms / 1000.0));
            }
        }
    }
    let seconds = get(RETRY_AFTER.as_str())?.parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The version in a returned secret id `https://…/secrets/{name}/{version}`.
fn version_of(id: &str, name: &str) -> Option<String> {
    let url = Url::parse(id).ok()?;
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [collection, returned_name, version]
            if collection.eq_ignore_ascii_case("secrets")
                && returned_name.eq_ignore_ascii_case(name)
                && version.len() == 32
                && version.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Some(version.to_ascii_lowercase())
        }
        _ => None,
    }
}

fn insecure(url: &Url) -> VaultError {
    let mut url = url.clone();
    url.set_query(None);
    VaultError::InsecureUrl {
        url: url.to_string(),
    }
}

/// An error and its causes, `: `-separated, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    one_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    impl TokenSource for Counting {
        fn fetch<'a>(
            &'a self,
            _scope: &'a str,
        ) -> identity::BoxFuture<'a, Result<AccessToken, identity::IdentityError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                Ok(AccessToken::new(
                    "secret-token",
                    std::time::SystemTime::now() + Duration::from_secs(3600),
                ))
            })
        }

        fn describe(&self) -> String {
            "counting test source".to_owned()
        }
    }

    /// The last line of defence: whatever the identifier, no request (and no token request) goes
    /// to a plain-http URL.
    #[tokio::test]
    async fn plain_http_is_refused_before_any_token_is_requested() {
        let source = Arc::new(Counting(AtomicUsize::new(0)));
        let tokens = Arc::new(TokenCache::new(source.clone()));
        let client = VaultClient::new(VaultClientConfig::new(tokens)).unwrap();
        let id = SecretId::parse("https://myvault.vault.azure.net/secrets/site").unwrap();
        // A challenge already known for the vault: the token would be attached at once.
        client.inner.challenges.lock().unwrap().insert(
            id.authority().to_owned(),
            Challenge {
                scope: "https://vault.azure.net/.default".to_owned(),
                tenant: None,
            },
        );
        let ctx = Ctx::new(&id);
        let url =
            Url::parse("http://myvault.vault.azure.net/secrets/site?api-version=7.5").unwrap();
        let Err(Failure::Final(error)) = client.get_authorized(&url, &ctx).await else {
            panic!("expected a final error");
        };
        assert!(matches!(error, VaultError::InsecureUrl { .. }), "{error}");
        assert!(error.to_string().contains("plain http"), "{error}");
        assert_eq!(source.0.load(Ordering::SeqCst), 0);
        let token = AccessToken::new("t", std::time::SystemTime::now());
        assert!(matches!(
            client.send(&url, Some(&token)).await,
            Err(Failure::Final(VaultError::InsecureUrl { .. }))
        ));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after_of(&h), None);
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after_of(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after_of(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after_of(&h), None);
    }

    #[test]
    fn nested_inner_errors_give_every_code() {
        let body = br#"{"error":{"code":"Forbidden","message":"m\r\nsecond line","innererror":{"code":"Outer","innererror":{"code":"ForbiddenByRbac"}}}}"#;
        let (codes, message) = error_codes(body).unwrap();
        assert_eq!(codes, ["Forbidden", "Outer", "ForbiddenByRbac"]);
        assert_eq!(one_line(&message.unwrap()), "m second line");
    }

    #[test]
    fn returned_ids_give_the_version() {
        let v = "06a7e4e3e63c431d8245883d2069d786";
        assert_eq!(
            version_of(
                &format!("https://x.vault.azure.net/secrets/Name/{v}"),
                "name"
            )
            .as_deref(),
            Some(v)
        );
        assert_eq!(
            version_of(
                &format!("https://x.vault.azure.net/secrets/other/{v}"),
                "name"
            ),
            None
        );
        assert_eq!(
            version_of("https://x.vault.azure.net/secrets/name", "name"),
            None
        );
    }
}
