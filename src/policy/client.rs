//! Which agent sent a request, from its User-Agent and tell-tale headers. Policies match on
//! these names (`client = ["claude-code"]`); audit records carry them.

use http::HeaderMap;

/// The names a policy can use, most specific first.
pub const CLIENTS: &[&str] = &[
    "claude-code",
    "codex-cli",
    "gemini-cli",
    "aider",
    "cursor",
    "anthropic-sdk",
    "openai-sdk",
    "google-sdk",
    "curl",
    "unknown",
];

/// Recognises the client of a request.
pub fn recognise(headers: &HeaderMap) -> &'static str {
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    if ua.starts_with("claude-cli/")
        || ua.contains("claude-code")
        || header("x-app").as_deref() == Some("cli")
    {
        "claude-code"
    } else if ua.starts_with("codex")
        || header("originator").is_some_and(|o| o.starts_with("codex"))
    {
        "codex-cli"
    } else if ua.contains("geminicli") || ua.contains("gemini-cli") {
        "gemini-cli"
    } else if ua.contains("aider") {
        "aider"
    } else if ua.contains("cursor") {
        "cursor"
    } else if ua.starts_with("anthropic/")
        || ua.contains("anthropic-typescript")
        || ua.contains("anthropic-python")
    {
        "anthropic-sdk"
    } else if ua.starts_with("openai/")
        || ua.contains("openai-python")
        || ua.contains("openai-node")
    {
        "openai-sdk"
    } else if ua.contains("google-genai") || ua.contains("google-api-") || ua.contains("genai-js") {
        "google-sdk"
    } else if ua.starts_with("curl/") {
        "curl"
    } else if let Some(lang) = header("x-stainless-lang") {
        // Stainless-generated SDKs without a telling User-Agent.
        let _ = lang;
        if header("anthropic-version").is_some() {
            "anthropic-sdk"
        } else {
            "openai-sdk"
        }
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn recognises_the_common_agents() {
        assert_eq!(
            recognise(&with(&[(
                "user-agent",
                "claude-cli/2.0.14 (external, cli)"
            )])),
            "claude-code"
        );
        assert_eq!(
            recognise(&with(&[(
                "user-agent",
                "codex_cli_rs/0.46.0 (Mac OS 15.0)"
            )])),
            "codex-cli"
        );
        assert_eq!(
            recognise(&with(&[("user-agent", "GeminiCLI/0.9.0 (linux; x64)")])),
            "gemini-cli"
        );
        assert_eq!(
            recognise(&with(&[("user-agent", "Anthropic/Python 0.69.0")])),
            "anthropic-sdk"
        );
        assert_eq!(
            recognise(&with(&[("user-agent", "OpenAI/Python 1.109.1")])),
            "openai-sdk"
        );
        assert_eq!(recognise(&with(&[("user-agent", "curl/8.5.0")])), "curl");
        assert_eq!(recognise(&with(&[("user-agent", "Aider/0.86")])), "aider");
        assert_eq!(recognise(&with(&[])), "unknown");
    }
}
