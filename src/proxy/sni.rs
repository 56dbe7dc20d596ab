//! The server name a tunnelled TLS client asks for, read from its first record (the
//! ClientHello) before any byte is relayed. A tunnel is for a host the gate does not inspect; a
//! ClientHello naming another host (domain fronting: `CONNECT cdn.example` carrying
//! `SNI api.openai.com`) would carry inspected-API traffic past the gate.
//!
//! A bounded parser of one record (at most 5 + 16 KiB + 2 KiB bytes): nothing here allocates
//! beyond the record, and every length is checked before use.

/// What the first bytes of a tunnel say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not a TLS handshake at all (some other protocol through CONNECT).
    NotTls,
    /// A ClientHello without a server name.
    NoName,
    /// A ClientHello naming this host (as sent; normalise before comparing).
    Name(String),
    /// Starts like TLS but cannot be read (truncated, malformed, split over records).
    Unreadable,
}

/// Largest TLS record (plaintext limit plus the slack the RFC allows for ciphertext).
pub const MAX_RECORD: usize = 5 + 16384 + 2048;

/// How many bytes the record starting `buf` needs in all, once its header is in.
pub fn record_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= 5).then(|| 5 + u16::from_be_bytes([buf[3], buf[4]]) as usize)
}

/// Reads the server name from a whole first record.
pub fn parse(record: &[u8]) -> Hello {
    if record.first() != Some(&0x16) {
        return Hello::NotTls;
    }
    parse_tls(record).unwrap_or(Hello::Unreadable)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }
}

fn parse_tls(record: &[u8]) -> Option<Hello> {
    let mut rec = Cursor(record);
    rec.take(3)?; // type, legacy version
    let len = rec.u16()?;
    let mut hs = Cursor(rec.take(len)?);
    if hs.u8()? != 0x01 {
        return None; // not a ClientHello
    }
    let len = hs.u24()?;
    // A ClientHello longer than its record is split over several: refuse to guess.
    let mut hello = Cursor(hs.take(len)?);
    hello.take(2 + 32)?; // legacy version, random
    let n = hello.u8()?;
    hello.take(n)?; // session id
    let n = hello.u16()?;
    hello.take(n)?; // cipher suites
    let n = hello.u8()?;
    hello.take(n)?; // compression methods
    if hello.0.is_empty() {
        return Some(Hello::NoName);
    }
    let n = hello.u16()?;
    let mut exts = Cursor(hello.take(n)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let n = exts.u16()?;
        let body = exts.take(n)?;
        if kind != 0 {
            continue;
        }
        let mut sni = Cursor(body);
        let n = sni.u16()?;
        let mut list = Cursor(sni.take(n)?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let n = list.u16()?;
            let name = list.take(n)?;
            if name_type == 0 {
                return std::str::from_utf8(name)
                    .ok()
                    .map(|s| Hello::Name(s.to_string()));
            }
        }
        return Some(Hello::NoName);
    }
    Some(Hello::NoName)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A real ClientHello from rustls for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let server = rustls_pki_types::ServerName::try_from(name.to_string()).expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).expect("conn");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("hello");
        out
    }

    #[test]
    fn the_name_in_a_real_client_hello_is_read() {
        let hello = client_hello("api.openai.com");
        let len = record_len(&hello).expect("header");
        assert_eq!(parse(&hello[..len]), Hello::Name("api.openai.com".into()));
    }

    #[test]
    fn other_bytes_are_told_apart() {
        assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n"), Hello::NotTls);
        let hello = client_hello("api.openai.com");
        assert_eq!(parse(&hello[..40]), Hello::Unreadable, "truncated");
        let mut lying = hello.clone();
        lying[3] = 0xff; // record longer than the bytes
        assert_eq!(parse(&lying), Hello::Unreadable);
        // No SNI: an IP address as the server name.
        let hello = client_hello("127.0.0.1");
        assert_eq!(parse(&hello), Hello::NoName);
    }
}
