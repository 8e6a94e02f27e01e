//! Reading the server name from the first bytes of a connection, before rustls sees them, so that a
//! listener taken out of service can be refused with the alert Application Gateway sends,
//! `unrecognized_name`, rather than the `access_denied` rustls sends when no certificate resolves.

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeked {
    /// Not enough bytes yet to find the server name.
    NeedMore,
    /// A ClientHello, with its `server_name` (lowercased) if it has one.
    ClientHello(Option<String>),
    /// Not a TLS ClientHello: let rustls answer it as it would.
    NotAClientHello,
}

/// A fatal TLS 1.2-framed `unrecognized_name` (112) alert record.
pub const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// The most a ClientHello is read for: one TLS record. A ClientHello split over several records
/// (rare, very large ones) is passed to rustls unexamined.
pub const MAX_PEEK: usize = 5 + (1 << 14);

/// Finds the SNI `host_name` in a ClientHello at the start of `bytes`.
pub fn peek_server_name(bytes: &[u8]) -> Peeked {
    if bytes.len() < 5 {
        return Peeked::NeedMore;
    }
    // Record header: handshake (22), any TLS 1.x legacy version, length.
    if bytes[0] != 22 || bytes[1] != 3 {
        return Peeked::NotAClientHello;
    }
    let record_len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
    if bytes.len() < 5 + record_len {
        return Peeked::NeedMore;
    }
    match parse_client_hello(&bytes[5..5 + record_len]) {
        Some(name) => Peeked::ClientHello(name),
        None => Peeked::NotAClientHello,
    }
}

/// `None`: not a well-formed ClientHello in this record; `Some(name)`: one, with its SNI.
fn parse_client_hello(record: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let body_len = r.u24()?;
    let mut body = Reader(r.take(body_len)?);
    body.take(2)?; // legacy_version
    body.take(32)?; // random
    let session_id = usize::from(body.u8()?);
    body.take(session_id)?;
    let suites = usize::from(body.u16()?);
    body.take(suites)?;
    let compression = usize::from(body.u8()?);
    body.take(compression)?;
    if body.0.is_empty() {
        return Some(None); // no extensions at all
    }
    let extensions_len = usize::from(body.u16()?);
    let mut extensions = Reader(body.take(extensions_len)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let len = usize::from(extensions.u16()?);
        let data = extensions.take(len)?;
        if kind != 0 {
            continue;
        }
        // server_name: a list of (type, name); type 0 is host_name.
        let mut list = Reader(data);
        let list_len = usize::from(list.u16()?);
        let mut names = Reader(list.take(list_len)?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name_len = usize::from(names.u16()?);
            let name = names.take(name_len)?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?.trim_end_matches('.');
                // RFC 6066 names have at least one byte: an empty one is malformed, for rustls
                // to refuse.
                if name.is_empty() {
                    return None;
                }
                return Some(Some(name.to_ascii_lowercase()));
            }
        }
        return Some(None);
    }
    Some(None)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The first flight of a real rustls client.
    fn client_hello(server_name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut bytes = Vec::new();
        conn.write_tls(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_server_name_of_only_dots_is_left_for_rustls_to_refuse() {
        // Found by the `client_hello` fuzz target: an empty name (fuzz/regressions/client_hello/)
        // was returned as the server name `""`.
        let mut hello = client_hello("a.example");
        let at = hello
            .windows(9)
            .position(|w| w == b"a.example")
            .expect("the name is in the hello");
        hello[at..at + 9].copy_from_slice(b".........");
        assert_eq!(peek_server_name(&hello), Peeked::NotAClientHello);
    }

    #[test]
    fn the_server_name_of_a_real_client_hello_is_found() {
        let hello = client_hello("WWW.Contoso.com");
        assert_eq!(
            peek_server_name(&hello),
            Peeked::ClientHello(Some("www.contoso.com".into()))
        );
    }

    #[test]
    fn a_client_hello_without_sni_has_no_name() {
        // rustls sends no SNI for an IP address.
        let hello = client_hello("127.0.0.1");
        assert_eq!(peek_server_name(&hello), Peeked::ClientHello(None));
    }

    #[test]
    fn a_partial_client_hello_needs_more_bytes() {
        let hello = client_hello("www.contoso.com");
        for cut in [0, 3, 5, 40, hello.len() - 1] {
            assert_eq!(
                peek_server_name(&hello[..cut]),
                Peeked::NeedMore,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn other_bytes_are_not_a_client_hello() {
        assert_eq!(
            peek_server_name(b"GET / HTTP/1.1\r\n\r\n"),
            Peeked::NotAClientHello
        );
        let mut hello = client_hello("www.contoso.com");
        hello[5] = 2; // a ServerHello where a ClientHello should be
        assert_eq!(peek_server_name(&hello), Peeked::NotAClientHello);
        let mut truncated_inside = client_hello("www.contoso.com");
        truncated_inside[3..5].copy_from_slice(&50u16.to_be_bytes()); // record shorter than its body
        assert_eq!(peek_server_name(&truncated_inside), Peeked::NotAClientHello);
    }
}
