//! Real rustls handshakes over TCP against the resolver and the crate's TLS policy.

mod common;

use std::sync::Arc;

use common::{serve, validated, Ca, Client};
use listener::{ListenerCertificate, SniResolver};
use rustls::{HandshakeKind, ProtocolVersion};

/// One listener for `hostnames` with a certificate for them from `ca`, served on its own address.
async fn one_site(ca: &Ca, hostnames: &[&str]) -> (Arc<ListenerCertificate>, std::net::SocketAddr) {
    let site = Arc::new(ListenerCertificate::new("site", hostnames.iter()));
    site.install(validated(&ca.site(hostnames)));
    let resolver = SniResolver::new([Arc::clone(&site)]).unwrap();
    let addr = serve(Arc::new(resolver)).await;
    (site, addr)
}

fn serving(listener: &ListenerCertificate) -> cert_bundle::Thumbprint {
    listener.current().expect("a certificate").thumbprint()
}

#[tokio::test]
async fn a_handshake_gets_the_installed_certificate() {
    let ca = Ca::root("Test Root");
    let (site, addr) = one_site(&ca, &["www.contoso.com"]).await;

    let mut connection = Client::trusting(&ca)
        .connect(addr, "www.contoso.com")
        .await
        .expect("handshake");

    assert_eq!(connection.thumbprint(), serving(&site));
    connection.echo("hello").await.unwrap();
}

#[tokio::test]
async fn a_swap_reaches_new_handshakes_and_spares_open_connections() {
    let ca = Ca::root("Test Root");
    let (site, addr) = one_site(&ca, &["www.contoso.com"]).await;
    let client = Client::trusting(&ca);
    let mut before = client.connect(addr, "www.contoso.com").await.unwrap();
    before.echo("before the swap").await.unwrap();
    let old = serving(&site);

    let new = ca.site(&["www.contoso.com"]);
    assert_eq!(site.install(validated(&new)), Some(old));

    // A new client: one that resumes a session sees no certificate at all (see below).
    let after = Client::trusting(&ca)
        .connect(addr, "www.contoso.com")
        .await
        .unwrap();
    assert_eq!(after.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(after.thumbprint(), new.thumbprint());
    before.echo("after the swap").await.unwrap();
    assert_eq!(before.thumbprint(), old);
}

#[tokio::test]
async fn tls13_sessions_resume_across_a_swap() {
    let ca = Ca::root("Test Root");
    let (site, addr) = one_site(&ca, &["www.contoso.com"]).await;
    let client = Client::tls13_only(&ca);
    let mut first = client.connect(addr, "www.contoso.com").await.unwrap();
    first.echo("collect the session tickets").await.unwrap();
    assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));

    site.install(validated(&ca.site(&["www.contoso.com"])));
    let mut resumed = client.connect(addr, "www.contoso.com").await.unwrap();

    assert_eq!(resumed.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(resumed.version(), Some(ProtocolVersion::TLSv1_3));
    resumed.echo("resumed").await.unwrap();
}

#[tokio::test]
async fn tls12_sessions_resume_too() {
    let ca = Ca::root("Test Root");
    let (_site, addr) = one_site(&ca, &["www.contoso.com"]).await;
    let client = Client::tls12_only(&ca);
    let mut first = client.connect(addr, "www.contoso.com").await.unwrap();
    first.echo("hello").await.unwrap();

    let resumed = client.connect(addr, "www.contoso.com").await.unwrap();

    assert_eq!(resumed.handshake_kind(), Some(HandshakeKind::Resumed));
}

#[tokio::test]
async fn tls12_only_and_tls13_only_clients_both_connect() {
    let ca = Ca::root("Test Root");
    let (_site, addr) = one_site(&ca, &["www.contoso.com"]).await;

    let mut tls12 = Client::tls12_only(&ca)
        .connect(addr, "www.contoso.com")
        .await
        .expect("TLS 1.2 handshake");
    let mut tls13 = Client::tls13_only(&ca)
        .connect(addr, "www.contoso.com")
        .await
        .expect("TLS 1.3 handshake");

    assert_eq!(tls12.version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(tls13.version(), Some(ProtocolVersion::TLSv1_3));
    tls12.echo("1.2").await.unwrap();
    tls13.echo("1.3").await.unwrap();
}

#[tokio::test]
async fn alpn_negotiates_h2_and_falls_back_to_http11() {
    let ca = Ca::root("Test Root");
    let (_site, addr) = one_site(&ca, &["www.contoso.com"]).await;
    let client = Client::trusting(&ca);

    let both = client.clone().offering(&["http/1.1", "h2"]);
    let http11 = client.clone().offering(&["http/1.1"]);

    let connection = both.connect(addr, "www.contoso.com").await.unwrap();
    assert_eq!(connection.alpn().as_deref(), Some("h2"));
    let connection = http11.connect(addr, "www.contoso.com").await.unwrap();
    assert_eq!(connection.alpn().as_deref(), Some("http/1.1"));
    let connection = client.connect(addr, "www.contoso.com").await.unwrap();
    assert_eq!(connection.alpn(), None);
}

/// Several listeners on one address, each with a certificate for its own hostnames (the
/// catch-all's certificate is for `default.test`).
async fn multi_site(
    ca: &Ca,
    listeners: &[(&str, &[&str])],
) -> (Vec<Arc<ListenerCertificate>>, std::net::SocketAddr) {
    let listeners: Vec<_> = listeners
        .iter()
        .map(|(name, hostnames)| {
            let listener = Arc::new(ListenerCertificate::new(*name, hostnames.iter()));
            let names = if hostnames.is_empty() {
                &["default.test"][..]
            } else {
                hostnames
            };
            listener.install(validated(&ca.site(names)));
            listener
        })
        .collect();
    let resolver = SniResolver::new(listeners.iter().cloned()).unwrap();
    (listeners, serve(Arc::new(resolver)).await)
}

#[tokio::test]
async fn sni_chooses_between_the_listeners_of_one_address() {
    let ca = Ca::root("Test Root");
    let (listeners, addr) = multi_site(
        &ca,
        &[
            ("contoso", &["www.contoso.com"]),
            ("fabrikam", &["www.fabrikam.com"]),
        ],
    )
    .await;
    let client = Client::trusting(&ca);

    let contoso = client.connect(addr, "www.contoso.com").await.unwrap();
    let fabrikam = client.connect(addr, "WWW.FABRIKAM.COM").await.unwrap();

    assert_eq!(contoso.thumbprint(), serving(&listeners[0]));
    assert_eq!(fabrikam.thumbprint(), serving(&listeners[1]));
}

#[tokio::test]
async fn an_exact_hostname_wins_over_a_wildcard() {
    let ca = Ca::root("Test Root");
    let (listeners, addr) = multi_site(
        &ca,
        &[
            ("wildcard", &["*.contoso.com"]),
            ("www", &["www.contoso.com"]),
        ],
    )
    .await;
    let client = Client::trusting(&ca);

    let www = client.connect(addr, "www.contoso.com").await.unwrap();
    let api = client.connect(addr, "api.contoso.com").await.unwrap();

    assert_eq!(www.thumbprint(), serving(&listeners[1]));
    assert_eq!(api.thumbprint(), serving(&listeners[0]));
}

#[tokio::test]
async fn unknown_names_and_clients_without_sni_get_the_catch_all() {
    let ca = Ca::root("Test Root");
    let (listeners, addr) =
        multi_site(&ca, &[("contoso", &["www.contoso.com"]), ("default", &[])]).await;
    let client = Client::trusting(&ca);

    let unknown = client.connect(addr, "default.test").await.unwrap();
    let without_sni = client
        .clone()
        .without_sni()
        .connect(addr, "default.test")
        .await
        .unwrap();

    assert_eq!(unknown.thumbprint(), serving(&listeners[1]));
    assert_eq!(without_sni.thumbprint(), serving(&listeners[1]));
}

#[tokio::test]
async fn without_catch_all_an_unknown_name_fails_the_handshake() {
    let ca = Ca::root("Test Root");
    let (_listeners, addr) = multi_site(
        &ca,
        &[
            ("contoso", &["www.contoso.com"]),
            ("fabrikam", &["www.fabrikam.com"]),
        ],
    )
    .await;

    let result = Client::trusting(&ca).connect(addr, "www.example.com").await;

    assert!(result.is_err(), "handshake should fail");
}

#[tokio::test]
async fn a_listener_without_a_certificate_fails_the_handshake() {
    let ca = Ca::root("Test Root");
    let site = Arc::new(ListenerCertificate::new("site", ["www.contoso.com"]));
    let addr = serve(Arc::new(SniResolver::new([Arc::clone(&site)]).unwrap())).await;
    let client = Client::trusting(&ca);

    let error = client
        .connect(addr, "www.contoso.com")
        .await
        .err()
        .expect("no certificate, no handshake");
    assert!(error.to_string().contains("alert"), "{error}");

    site.install(validated(&ca.site(&["www.contoso.com"])));
    client
        .connect(addr, "www.contoso.com")
        .await
        .expect("now it serves");

    site.clear();
    assert!(client.connect(addr, "www.contoso.com").await.is_err());
}

#[tokio::test]
async fn a_listener_out_of_service_fails_handshakes_and_keeps_its_certificate_for_later() {
    let ca = Ca::root("Test Root");
    let site = Arc::new(ListenerCertificate::new("site", ["www.contoso.com"]));
    let other = Arc::new(ListenerCertificate::new("other", ["www.fabrikam.com"]));
    let resolver = SniResolver::new([Arc::clone(&site), Arc::clone(&other)]).unwrap();
    let addr = serve(Arc::new(resolver)).await;
    let client = Client::trusting(&ca);
    let certificate = validated(&ca.site(&["www.contoso.com"]));
    let thumbprint = certificate.thumbprint();
    site.install(certificate);
    other.install(validated(&ca.site(&["www.fabrikam.com"])));

    assert!(site.set_serving(false), "it was serving");
    assert!(
        client.connect(addr, "www.contoso.com").await.is_err(),
        "out of service, no handshake"
    );
    client
        .connect(addr, "www.fabrikam.com")
        .await
        .expect("the other listener on the address is not affected");
    assert_eq!(
        site.current().map(|c| c.thumbprint()),
        Some(thumbprint),
        "the certificate is kept"
    );

    assert!(!site.set_serving(true));
    client
        .connect(addr, "www.contoso.com")
        .await
        .expect("back in service with the same certificate");
}
