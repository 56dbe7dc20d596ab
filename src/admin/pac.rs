//! The proxy auto-config file: only inspected hosts go through the proxy, everything else is
//! DIRECT, so a browser or OS pointed at it never pays a detour it does not need.

use std::fmt::Write;
use std::net::SocketAddr;

/// The `host:port` clients should use for the proxy. A wildcard listen address is no use in a PAC
/// file, so then the host the PAC was fetched from stands in, with the proxy's port.
pub fn proxy_address(proxy: SocketAddr, admin_host_header: Option<&str>) -> String {
    if !proxy.ip().is_unspecified() {
        return proxy.to_string();
    }
    // The Host header is the client's to write: only a plain host name or address goes into the
    // script (a quote in it would otherwise inject JavaScript every browser using the PAC runs).
    let host = admin_host_header
        .map(|h| match h.rsplit_once(':') {
            Some((host, port))
                if port.chars().all(|c| c.is_ascii_digit()) && !host.ends_with(':') =>
            {
                host
            }
            _ => h,
        })
        .and_then(|h| crate::proxy::host::normalize(h).ok())
        .map_or_else(|| "127.0.0.1".to_string(), |h| h.as_uri_host());
    format!("{host}:{}", proxy.port())
}

/// Renders the PAC script. `hosts` are exact names or `*.domain` wildcards.
pub fn render(hosts: &[String], proxy: &str) -> String {
    let mut script = String::from(
        "// egress-guard: inspected AI API hosts go through the proxy, everything else DIRECT.\n\
         function FindProxyForURL(url, host) {\n  host = host.toLowerCase();\n",
    );
    for host in hosts {
        let host = host.to_ascii_lowercase();
        // Host names are checked by the gate's policy loader; quoting defensively anyway keeps a
        // stray quote from breaking the script.
        let safe: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | '_'))
            .collect();
        let test = match safe.strip_prefix("*.") {
            Some(domain) => format!("host == \"{domain}\" || dnsDomainIs(host, \".{domain}\")"),
            None => format!("host == \"{safe}\""),
        };
        let _ = writeln!(script, "  if ({test}) return \"PROXY {proxy}\";");
    }
    script.push_str("  return \"DIRECT\";\n}\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inspected_hosts_are_proxied() {
        let pac = render(
            &["api.anthropic.com".into(), "*.openai.azure.com".into()],
            "127.0.0.1:8877",
        );
        assert!(pac.contains("if (host == \"api.anthropic.com\") return \"PROXY 127.0.0.1:8877\";"));
        assert!(pac.contains("dnsDomainIs(host, \".openai.azure.com\")"));
        assert!(pac.trim_end().ends_with("return \"DIRECT\";\n}"));
    }

    #[test]
    fn a_wildcard_listener_is_named_by_the_host_the_pac_came_from() {
        let any: SocketAddr = "0.0.0.0:8877".parse().unwrap();
        assert_eq!(proxy_address(any, Some("gw.corp:8878")), "gw.corp:8877");
        assert_eq!(proxy_address(any, Some("[::1]:8878")), "[::1]:8877");
        for hostile in ["x\";alert(1);//", "a b", "evil.example\"+\"", ""] {
            assert_eq!(
                proxy_address(any, Some(hostile)),
                "127.0.0.1:8877",
                "{hostile}"
            );
        }
        let lo: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(proxy_address(lo, Some("x")), "127.0.0.1:9000");
    }
}
