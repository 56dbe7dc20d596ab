//! Destination host names, normalised once where they are parsed.
//!
//! Every decision downstream (the gate's route, leaf minting, `--resolve` pins) compares host
//! names exactly, so two spellings of one host must become one string before any of them looks:
//! `API.OpenAI.com.` is `api.openai.com`. A name that is not a plain DNS name (empty labels,
//! spaces, percent signs, ...) is refused outright rather than guessed at, so no spelling can
//! slip an inspected host past the gate into an uninspected tunnel.

use std::net::IpAddr;

/// A destination host the proxy may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name: lower-case, no trailing dot, labels of `[a-z0-9-_]`.
    Name(String),
    /// An IP literal, as it goes into a URI (`[...]` around IPv6).
    Ip(IpAddr),
}

impl Host {
    /// The form the gate, the leaf cache and the upstream URI see.
    pub fn as_uri_host(&self) -> String {
        match self {
            Self::Name(name) => name.clone(),
            Self::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Self::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        }
    }
}

/// Why a host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid host name")]
pub struct BadHost(pub String);

/// Normalises a host as a client named it (CONNECT authority, absolute URI, `--resolve`,
/// `--inspect`): lower-case, one trailing dot dropped, then a DNS name or an IP literal.
pub fn normalize(raw: &str) -> Result<Host, BadHost> {
    let bad = || BadHost(raw.to_string());
    if let Some(inner) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| bad());
    }
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let lower = raw.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    // All-numeric dotted names that did not parse as an address (`1.2.3`, `0x7f.1`) are
    // address spellings some resolvers accept: not names we will route by.
    if name
        .split('.')
        .next_back()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    Ok(Host::Name(name.to_string()))
}

/// Checks an `--inspect` value at start-up: an exact DNS name (no wildcard, no address) that the
/// local CA may sign for. Returns the normalised name.
pub fn inspect_target(raw: &str) -> Result<String, String> {
    if raw.contains('*') {
        return Err(format!(
            "--inspect {raw}: wildcards are not supported; name each host exactly"
        ));
    }
    match normalize(raw.trim()) {
        Ok(Host::Name(name)) if crate::tls::is_interceptable(&name) => Ok(name),
        Ok(Host::Name(name)) => Err(format!(
            "--inspect {raw}: `{name}` is outside the local CA's catalogue of AI API domains, so \
             egress-guard cannot intercept it"
        )),
        Ok(Host::Ip(_)) => Err(format!(
            "--inspect {raw}: an IP address cannot be inspected; name the host"
        )),
        Err(e) => Err(format!("--inspect {raw}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Host {
        Host::Name(s.to_string())
    }

    #[test]
    fn spellings_of_one_host_become_one_name() {
        assert_eq!(normalize("api.openai.com"), Ok(name("api.openai.com")));
        assert_eq!(normalize("API.OpenAI.com."), Ok(name("api.openai.com")));
        assert_eq!(normalize("api.openai.com."), Ok(name("api.openai.com")));
    }

    #[test]
    fn names_that_are_not_plain_dns_names_are_refused() {
        for bad in [
            "",
            ".",
            "api.openai.com..",
            "api..openai.com",
            ".api.openai.com",
            "api.openai.com%2e",
            "api openai.com",
            "api.openai.com\0",
            "-api.openai.com",
            "1.2.3",
            "0x7f.1",
            "[::1",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ip_literals_are_told_apart() {
        assert_eq!(
            normalize("127.0.0.1"),
            Ok(Host::Ip("127.0.0.1".parse().unwrap()))
        );
        let v6 = normalize("[::1]").expect("v6");
        assert_eq!(v6.as_uri_host(), "[::1]");
    }

    #[test]
    fn inspect_targets_must_be_exact_names_inside_the_catalogue() {
        assert_eq!(
            inspect_target("API.mistral.ai."),
            Ok("api.mistral.ai".to_string())
        );
        assert!(inspect_target("*.openai.com").is_err());
        assert!(inspect_target("www.mybank.example").is_err());
        assert!(inspect_target("127.0.0.1").is_err());
        assert!(inspect_target("api..openai.com").is_err());
    }
}
