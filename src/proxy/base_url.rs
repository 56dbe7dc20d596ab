//! Base-URL mode: `http://PROXY/anthropic/v1/messages` means `https://api.anthropic.com/v1/messages`,
//! for agents that take a base URL but no proxy setting.

/// Path prefixes and the API host each one stands for.
pub const PREFIXES: &[(&str, &str)] = &[
    ("anthropic", "api.anthropic.com"),
    ("openai", "api.openai.com"),
    ("gemini", "generativelanguage.googleapis.com"),
];

/// Splits `/PREFIX/rest?query` into the API host and `/rest?query`; `None` if no prefix matches.
pub fn map(path_and_query: &str) -> Option<(&'static str, String)> {
    let rest = path_and_query.strip_prefix('/')?;
    PREFIXES.iter().find_map(|(prefix, host)| {
        let tail = rest.strip_prefix(prefix)?;
        match tail.chars().next() {
            None => Some((*host, "/".to_string())),
            Some('/') => Some((*host, tail.to_string())),
            Some('?') => Some((*host, format!("/{tail}"))),
            Some(_) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_map_to_their_api_hosts() {
        assert_eq!(
            map("/anthropic/v1/messages"),
            Some(("api.anthropic.com", "/v1/messages".to_string()))
        );
        assert_eq!(
            map("/gemini/v1beta/models/x:generateContent?alt=sse"),
            Some((
                "generativelanguage.googleapis.com",
                "/v1beta/models/x:generateContent?alt=sse".to_string()
            ))
        );
        assert_eq!(map("/openai"), Some(("api.openai.com", "/".to_string())));
        assert_eq!(map("/openaix/v1"), None);
        assert_eq!(map("/v1/messages"), None);
    }
}
