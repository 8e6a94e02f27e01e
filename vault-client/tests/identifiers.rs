//! Which strings are Key Vault secret identifiers, and what each error says.

use vault_client::{Cloud, ObjectKind, SecretId};

const V: &str = "06a7e4e3e63c431d8245883d2069d786";

/// What a parse should give: the canonical form, or an error containing every fragment.
enum Expect<'a> {
    Parses {
        canonical: &'a str,
        vault_url: &'a str,
        name: &'a str,
        version: Option<&'a str>,
        cloud: Option<Cloud>,
    },
    Fails(&'a [&'a str]),
}
use Expect::*;

#[track_caller]
fn check_with(input: &str, allowed: &[String], expected: Expect<'_>) {
    let parsed = SecretId::parse_with_allowed_hosts(input, allowed);
    match (parsed, expected) {
        (
            Ok(id),
            Parses {
                canonical,
                vault_url,
                name,
                version,
                cloud,
            },
        ) => {
            assert_eq!(id.to_string(), canonical, "{input}");
            assert_eq!(id.vault_url(), vault_url, "{input}");
            assert_eq!(id.name(), name, "{input}");
            assert_eq!(id.version(), version, "{input}");
            assert_eq!(id.is_versioned(), version.is_some(), "{input}");
            assert_eq!(id.cloud(), cloud, "{input}");
            // The canonical form parses back to the same identifier.
            assert_eq!(
                SecretId::parse_with_allowed_hosts(canonical, allowed).unwrap(),
                id
            );
        }
        (Err(e), Fails(fragments)) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
            assert!(message.contains(input.trim()), "names the input: {message}");
            for fragment in fragments {
                assert!(
                    message.contains(fragment),
                    "{input}: {message:?} lacks {fragment:?}"
                );
            }
        }
        (Ok(id), Fails(_)) => panic!("{input} parsed as {id}, expected an error"),
        (Err(e), Parses { .. }) => panic!("{input} failed: {e}"),
    }
}

#[track_caller]
fn check(input: &str, expected: Expect<'_>) {
    check_with(input, &[], expected)
}

#[track_caller]
fn ok<'a>(canonical: &'a str, name: &'a str, version: Option<&'a str>, cloud: Cloud) -> Expect<'a> {
    let vault_url_end = canonical.find("/secrets/").unwrap() + 1;
    Parses {
        canonical,
        vault_url: &canonical[..vault_url_end],
        name,
        version,
        cloud: Some(cloud),
    }
}

#[test]
fn every_cloud_versioned_and_versionless() {
    for (suffix, cloud) in [
        ("vault.azure.net", Cloud::Public),
        ("vault.azure.cn", Cloud::China),
        ("vault.usgovcloudapi.net", Cloud::UsGovernment),
        ("vault.microsoftazure.de", Cloud::Germany),
    ] {
        let base = format!("https://myvault.{suffix}/secrets/site-cert");
        check(&base, ok(&base, "site-cert", None, cloud));
        let versioned = format!("{base}/{V}");
        check(&versioned, ok(&versioned, "site-cert", Some(V), cloud));
        assert_eq!(cloud.vault_suffix(), suffix);
    }
}

#[test]
fn certificates_are_read_through_their_secret() {
    let canonical = format!("https://myvault.vault.azure.net/secrets/site-cert/{V}");
    check(
        &format!("https://myvault.vault.azure.net/certificates/site-cert/{V}"),
        ok(&canonical, "site-cert", Some(V), Cloud::Public),
    );
    check(
        "https://myvault.vault.azure.net/certificates/site-cert",
        ok(
            "https://myvault.vault.azure.net/secrets/site-cert",
            "site-cert",
            None,
            Cloud::Public,
        ),
    );
    let id = SecretId::parse("https://myvault.vault.azure.net/certificates/site-cert").unwrap();
    assert_eq!(id.object_kind(), ObjectKind::Certificate);
    assert_eq!(
        SecretId::parse("https://myvault.vault.azure.net/secrets/site-cert").unwrap(),
        id,
        "the same secret either way"
    );
}

#[test]
fn case_trailing_slash_and_default_port() {
    let canonical = "https://myvault.vault.azure.net/secrets/Site-Cert";
    for input in [
        "https://MyVault.Vault.Azure.NET/Secrets/Site-Cert",
        "https://myvault.vault.azure.net/secrets/Site-Cert/",
        "HTTPS://myvault.vault.azure.net:443/SECRETS/Site-Cert",
        "  https://myvault.vault.azure.net/secrets/Site-Cert  ",
    ] {
        check(input, ok(canonical, "Site-Cert", None, Cloud::Public));
    }
    // Versions are hex in any case; kept lowercase.
    let canonical = format!("https://myvault.vault.azure.net/secrets/a/{V}");
    check(
        &format!(
            "https://myvault.vault.azure.net/certificates/a/{}/",
            V.to_uppercase()
        ),
        ok(&canonical, "a", Some(V), Cloud::Public),
    );
    // Names compare case-insensitively, as Key Vault's do.
    assert_eq!(
        SecretId::parse("https://v12.vault.azure.net/secrets/NAME").unwrap(),
        SecretId::parse("https://v12.vault.azure.net/secrets/name").unwrap()
    );
}

#[test]
fn names_follow_key_vaults_rules() {
    let long = "a".repeat(127);
    let canonical = format!("https://myvault.vault.azure.net/secrets/{long}");
    check(&canonical, ok(&canonical, &long, None, Cloud::Public));
    // The recordings' names end with a dash.
    let recorded = "https://keyvault-name.vault.azure.net/secrets/CRUDCertificateName-cangetacertificatessecretinPKCS12format-";
    check(
        &format!("{recorded}/"),
        ok(
            recorded,
            "CRUDCertificateName-cangetacertificatessecretinPKCS12format-",
            None,
            Cloud::Public,
        ),
    );

    check(
        &format!(
            "https://myvault.vault.azure.net/secrets/{}",
            "a".repeat(128)
        ),
        Fails(&["secrets name", "longer than 127"]),
    );
    check(
        "https://myvault.vault.azure.net/secrets/site_cert",
        Fails(&["\"site_cert\"", "only letters, digits and dashes"]),
    );
    check(
        "https://myvault.vault.azure.net/secrets/site%20cert",
        Fails(&["only letters, digits and dashes"]),
    );
    check(
        "https://myvault.vault.azure.net/certificates/",
        Fails(&["no certificates name"]),
    );
    check(
        "https://myvault.vault.azure.net/",
        Fails(&["path is empty"]),
    );
}

#[test]
fn versions_are_32_hex_digits() {
    check(
        "https://myvault.vault.azure.net/secrets/site/latest",
        Fails(&["version \"latest\"", "32 hex digits"]),
    );
    check(
        &format!("https://myvault.vault.azure.net/secrets/site/{}", &V[..31]),
        Fails(&["32 hex digits"]),
    );
    check(
        &format!("https://myvault.vault.azure.net/secrets/site/{}g", &V[..31]),
        Fails(&["32 hex digits"]),
    );
    check(
        &format!("https://myvault.vault.azure.net/secrets/site/{V}/extra"),
        Fails(&["after the version", "/extra"]),
    );
}

#[test]
fn scheme_host_and_collection_errors_say_which_part_is_wrong() {
    check(
        "http://myvault.vault.azure.net/secrets/site",
        Fails(&["scheme is http", "only reached over https"]),
    );
    check(
        "ftp://myvault.vault.azure.net/secrets/site",
        Fails(&["scheme is \"ftp\""]),
    );
    check(
        "myvault.vault.azure.net/secrets/site",
        Fails(&["not a URL"]),
    );
    check("", Fails(&["empty"]));
    check(
        "https://myvault.vault.example.com/secrets/site",
        Fails(&[
            "myvault.vault.example.com is not a Key Vault host",
            "vault.azure.net",
            "allowed_hosts",
        ]),
    );
    check(
        "https://myvault.vault.azure.net.evil.com/secrets/site",
        Fails(&["not a Key Vault host"]),
    );
    check(
        "https://vault.azure.net/secrets/site",
        Fails(&["not a Key Vault host"]),
    );
    check(
        "https://myhsm.managedhsm.azure.net/keys/site",
        Fails(&["Managed HSM", "not supported"]),
    );
    check(
        "https://myvault.vault.azure.net/keys/site",
        Fails(&["names a key", "/secrets/{name}"]),
    );
    check(
        "https://myvault.vault.azure.net/storage/site",
        Fails(&["collection \"storage\"", "\"secrets\" or \"certificates\""]),
    );
    check(
        "https://myvault.vault.azure.net:8443/secrets/site",
        Fails(&["port 8443", "only reached on 443"]),
    );
    check(
        "https://ab.vault.azure.net/secrets/site",
        Fails(&["vault name \"ab\"", "3 to 24"]),
    );
    check(
        "https://my--vault.vault.azure.net/secrets/site",
        Fails(&["consecutive dashes"]),
    );
    check(
        "https://1vault.vault.azure.net/secrets/site",
        Fails(&["start with a letter"]),
    );
    check(
        "https://a.b.vault.azure.net/secrets/site",
        Fails(&["one DNS label"]),
    );
    check(
        "https://user:pw@myvault.vault.azure.net/secrets/site",
        Fails(&["user name or password"]),
    );
    check(
        "https://myvault.vault.azure.net/secrets/site?api-version=7.5",
        Fails(&["query"]),
    );
}

#[test]
fn allowed_development_hosts_replace_the_cloud_suffix() {
    let allowed = vec![
        "localhost:8443".to_owned(),
        "https://Emulator.Test/".to_owned(),
    ];
    check_with(
        "https://localhost:8443/secrets/site",
        &allowed,
        Parses {
            canonical: "https://localhost:8443/secrets/site",
            vault_url: "https://localhost:8443/",
            name: "site",
            version: None,
            cloud: None,
        },
    );
    check_with(
        &format!("https://EMULATOR.test:443/certificates/site/{V}/"),
        &allowed,
        Parses {
            canonical: &format!("https://emulator.test/secrets/site/{V}"),
            vault_url: "https://emulator.test/",
            name: "site",
            version: Some(V),
            cloud: None,
        },
    );
    // Another port of an allowed host is not allowed.
    check_with(
        "https://localhost:9443/secrets/site",
        &allowed,
        Fails(&["localhost is not a Key Vault host"]),
    );
    // Without the allowance, the same URI is refused.
    check(
        "https://localhost:8443/secrets/site",
        Fails(&["not a Key Vault host"]),
    );
    // Plain http stays refused even for an allowed host.
    check_with(
        "http://localhost:8443/secrets/site",
        &allowed,
        Fails(&["scheme is http"]),
    );
    // Path rules still apply.
    check_with(
        "https://localhost:8443/secrets/a_b",
        &allowed,
        Fails(&["only letters"]),
    );
}

#[test]
fn versions_can_be_dropped_and_set() {
    let id = SecretId::parse(&format!("https://myvault.vault.azure.net/secrets/site/{V}")).unwrap();
    assert_eq!(
        id.versionless().to_string(),
        "https://myvault.vault.azure.net/secrets/site"
    );
    assert_eq!(id.versionless().with_version(V).unwrap(), id);
    assert!(id.with_version("nope").is_err());
    assert_eq!(id.vault_name(), "myvault");
    assert_eq!(
        format!("{id:?}"),
        format!("SecretId(https://myvault.vault.azure.net/secrets/site/{V})")
    );
}
