//! The certificate policy as Key Vault reads and writes it (`CertificatePolicy` in the spec).
//!
//! Every field is optional on input; [`CertificatePolicy::resolved_for_create`] fills in Key Vault's
//! defaults the way the service does for `create`.

use serde::{Deserialize, Serialize};

pub(crate) const PKCS12: &str = "application/x-pkcs12";
pub(crate) const PEM: &str = "application/x-pem-file";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CertificatePolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_props: Option<KeyProperties>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_props: Option<SecretProperties>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x509_props: Option<X509Properties>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_actions: Option<Vec<LifetimeAction>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<PolicyAttributes>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct KeyProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse_key: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SecretProperties {
    #[serde(rename = "contentType", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct X509Properties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sans: Option<SubjectAlternativeNames>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ekus: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_usage: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity_months: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_constraints: Option<BasicConstraints>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SubjectAlternativeNames {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upns: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    #[serde(rename = "ipAddresses", skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<Vec<String>>,
}

impl SubjectAlternativeNames {
    pub fn is_empty(&self) -> bool {
        [
            &self.emails,
            &self.dns_names,
            &self.upns,
            &self.uris,
            &self.ip_addresses,
        ]
        .iter()
        .all(|list| list.as_ref().is_none_or(|l| l.is_empty()))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct BasicConstraints {
    pub ca: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LifetimeAction {
    pub trigger: Trigger,
    pub action: Action,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Trigger {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_percentage: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_before_expiry: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Action {
    pub action_type: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct IssuerParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_transparency: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PolicyAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
}

/// The key a policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySpec {
    Rsa(u32),
    EcP256,
    EcP384,
}

impl CertificatePolicy {
    /// Key Vault's defaults for a `create` request (recorded: an empty policy gives RSA-2048
    /// exportable, PKCS#12, serverAuth+clientAuth, digitalSignature+keyEncipherment, 12 months,
    /// AutoRenew at 80 %).
    pub fn resolved_for_create(mut self, now: i64) -> Self {
        let key = self.key_props.get_or_insert_with(Default::default);
        key.exportable.get_or_insert(true);
        let kty = key.kty.get_or_insert_with(|| "RSA".to_owned()).clone();
        if kty.starts_with("EC") {
            let crv = key.crv.get_or_insert_with(|| "P-256".to_owned()).clone();
            key.key_size.get_or_insert(match crv.as_str() {
                "P-384" => 384,
                "P-521" => 521,
                _ => 256,
            });
        } else {
            key.key_size.get_or_insert(2048);
        }
        key.reuse_key.get_or_insert(false);
        let secret = self.secret_props.get_or_insert_with(Default::default);
        secret.content_type.get_or_insert_with(|| PKCS12.to_owned());
        let x509 = self.x509_props.get_or_insert_with(Default::default);
        x509.ekus.get_or_insert_with(|| {
            vec![
                "1.3.6.1.5.5.7.3.1".to_owned(),
                "1.3.6.1.5.5.7.3.2".to_owned(),
            ]
        });
        x509.key_usage.get_or_insert_with(|| {
            vec!["digitalSignature".to_owned(), "keyEncipherment".to_owned()]
        });
        x509.validity_months.get_or_insert(12);
        x509.basic_constraints.get_or_insert_with(Default::default);
        self.lifetime_actions.get_or_insert_with(|| {
            vec![LifetimeAction {
                trigger: Trigger {
                    lifetime_percentage: Some(80),
                    days_before_expiry: None,
                },
                action: Action {
                    action_type: "AutoRenew".to_owned(),
                },
            }]
        });
        self.issuer.get_or_insert_with(|| IssuerParameters {
            name: Some("Self".to_owned()),
            ..Default::default()
        });
        self.attributes = Some(PolicyAttributes {
            enabled: Some(self.attributes.and_then(|a| a.enabled).unwrap_or(true)),
            created: Some(now),
            updated: Some(now),
        });
        self
    }

    pub fn content_type(&self) -> Option<&str> {
        self.secret_props
            .as_ref()
            .and_then(|s| s.content_type.as_deref())
    }

    /// The key to generate, or why this emulator cannot.
    pub fn key_spec(&self) -> Result<KeySpec, String> {
        let key = self.key_props.clone().unwrap_or_default();
        match key.kty.as_deref().unwrap_or("RSA") {
            "RSA" => match key.key_size.unwrap_or(2048) {
                size @ (2048 | 3072 | 4096) => Ok(KeySpec::Rsa(size)),
                size => Err(format!("RSA key size {size} is not supported; use 2048, 3072 or 4096")),
            },
            "EC" => match key.crv.as_deref().unwrap_or("P-256") {
                "P-256" => Ok(KeySpec::EcP256),
                "P-384" => Ok(KeySpec::EcP384),
                crv => Err(format!("curve {crv} is not supported by the emulator; use P-256 or P-384")),
            },
            kty => Err(format!(
                "key type {kty} is not supported by the emulator (HSM keys cannot be emulated); use RSA or EC"
            )),
        }
    }
}
