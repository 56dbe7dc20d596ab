//! The policy as written in TOML: destinations, rules, sanctioned keys, local endpoints, limits
//! and the policy's own test cases.
//!
//! Read top-down like a firewall: the first destination whose hosts match decides the route; for
//! each finding, the first rule whose conditions all match decides its action.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use crate::detect::{Category, Severity};

/// A whole policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default, rename = "destination")]
    pub destinations: Vec<Destination>,
    #[serde(default)]
    pub sanctioned_keys: SanctionedKeys,
    #[serde(default, rename = "local")]
    pub locals: Vec<LocalEndpoint>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

/// Size bounds; a body over them is blocked, never inspected partially.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest decoded body inspected, in bytes.
    pub max_body_bytes: usize,
    /// Largest decompression ratio accepted (above 1 MiB of output).
    pub max_ratio: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            max_ratio: 200,
        }
    }
}

/// Policy-wide choices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The action for a finding no rule matches.
    pub default_action: Action,
    /// What to do when a request carries an image or other media egress-guard cannot read.
    pub media: Action,
    /// A WebSocket upgrade to an inspected host: refused (the client falls back to HTTPS) or
    /// inspected message by message.
    pub websocket: WebSocketMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_action: Action::Monitor,
            media: Action::Allow,
            websocket: WebSocketMode::Refuse,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebSocketMode {
    Refuse,
    Inspect,
}

/// Where connections to some hosts may go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Host globs (`*.openai.azure.com`), `*` for any host, or `@ai` for the built-in catalogue
    /// of AI API hosts.
    pub hosts: Vec<String>,
    pub route: RouteChoice,
    /// Read bodies as this provider's API instead of the one the host name implies.
    #[serde(default)]
    pub provider: Option<ProviderName>,
    /// Forward (unchanged, recorded) when inspection itself fails instead of blocking.
    #[serde(default)]
    pub fail_open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteChoice {
    Inspect,
    Tunnel,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    Anthropic,
    Openai,
    Gemini,
    Bedrock,
    Generic,
}

impl From<ProviderName> for crate::inspect::Provider {
    fn from(p: ProviderName) -> Self {
        use crate::inspect::Provider;
        match p {
            ProviderName::Anthropic => Provider::Anthropic,
            ProviderName::Openai => Provider::OpenAi,
            ProviderName::Gemini => Provider::Gemini,
            ProviderName::Bedrock => Provider::Bedrock,
            ProviderName::Generic => Provider::Generic,
        }
    }
}

/// The organisation's own API keys, known by keyed fingerprint only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanctionedKeys {
    /// The HMAC-SHA256 key the fingerprints were made with (not a secret in itself: it stops
    /// fingerprints from being compared across organisations).
    #[serde(default)]
    pub salt: String,
    /// Lower-case hex HMAC-SHA256(salt, api_key) of each sanctioned key.
    #[serde(default)]
    pub fingerprints: Vec<String>,
    /// What a request with any other key gets (default: block).
    #[serde(default)]
    pub action: Option<Action>,
    /// What the user reads when their key is refused.
    #[serde(default)]
    pub message: Option<String>,
    /// The proxy puts the sanctioned key on the request itself, from a place the agent never
    /// sees.
    #[serde(default)]
    pub inject: Vec<KeyInjection>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInjection {
    pub provider: ProviderName,
    /// Environment variable of the proxy holding the key.
    #[serde(default)]
    pub env: Option<String>,
    /// File holding the key (trailing whitespace ignored).
    #[serde(default)]
    pub file: Option<String>,
}

impl fmt::Debug for KeyInjection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyInjection")
            .field("provider", &self.provider)
            .field("env", &self.env)
            .field("file", &self.file)
            .finish()
    }
}

/// A local OpenAI- or Anthropic-compatible model server a rule may send requests to instead of
/// the cloud.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalEndpoint {
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:11434`.
    pub url: String,
}

/// What happens to a finding or a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Forward unchanged, nothing recorded beyond the decision.
    Allow,
    /// Forward unchanged, finding recorded.
    Monitor,
    /// Replace the value with `[REDACTED:<detector>]`.
    Redact,
    /// Replace the value with a consistent surrogate, restored in the response.
    Pseudonymize,
    /// Send the request to the rule's `local` endpoint instead of the cloud.
    Local,
    /// Answer the client with an error; nothing leaves.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Monitor => "monitor",
            Action::Redact => "redact",
            Action::Pseudonymize => "pseudonymize",
            Action::Local => "local",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `trial` rules act as `monitor` and record what they would have done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    #[default]
    Enforce,
    Trial,
}

/// One line of the policy. Every condition present must match; absent conditions match all.
/// List conditions match when any element matches (globs with `*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: Spanned<String>,
    pub action: Action,
    #[serde(default)]
    pub stage: Stage,
    /// For `action = "local"`: the `[[local]]` endpoint's name.
    #[serde(default)]
    pub local: Option<Spanned<String>>,
    /// Extra words for the user when this rule blocks.
    #[serde(default)]
    pub message: Option<String>,
    // Request conditions.
    #[serde(default)]
    pub destination: Vec<String>,
    #[serde(default)]
    pub provider: Vec<ProviderName>,
    #[serde(default)]
    pub model: Vec<String>,
    #[serde(default)]
    pub client: Vec<String>,
    // Finding conditions.
    #[serde(default)]
    pub detector: Vec<String>,
    #[serde(default)]
    pub category: Vec<Category>,
    /// The finding's severity is at least this.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// JSON-path globs (`messages*`, `header.*`, `query.*`).
    #[serde(default)]
    pub location: Vec<String>,
}

impl Rule {
    /// A rule with no finding condition also decides requests without findings (block a
    /// model, send a client to a local model).
    pub fn is_request_rule(&self) -> bool {
        self.detector.is_empty()
            && self.category.is_empty()
            && self.severity.is_none()
            && self.location.is_empty()
    }
}

/// One of the policy's own test cases: a request and what the policy must decide.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub host: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The JSON (or other) body as text.
    #[serde(default)]
    pub body: String,
    /// The expected request action.
    pub expect: Action,
    /// Optionally, the rule that must have decided.
    #[serde(default)]
    pub expect_rule: Option<String>,
    /// Optionally, a detector that must appear among the findings.
    #[serde(default)]
    pub expect_detector: Option<String>,
}

fn default_method() -> String {
    "POST".to_owned()
}

fn default_path() -> String {
    "/v1/messages".to_owned()
}

/// `*` matches any run of characters; comparison ignores ASCII case.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Known AI API hosts (`@ai` in a destination), so that a new or unexpected AI service is
/// inspected and visible rather than silently tunnelled.
pub const AI_CATALOGUE: &[&str] = &[
    "api.anthropic.com",
    "api.openai.com",
    "*.openai.azure.com",
    "*.cognitiveservices.azure.com",
    "*.services.ai.azure.com",
    "generativelanguage.googleapis.com",
    "aiplatform.googleapis.com",
    "*-aiplatform.googleapis.com",
    "bedrock-runtime.*.amazonaws.com",
    "api.mistral.ai",
    "codestral.mistral.ai",
    "api.cohere.ai",
    "api.cohere.com",
    "api.groq.com",
    "api.together.xyz",
    "api.together.ai",
    "api.deepseek.com",
    "openrouter.ai",
    "api.x.ai",
    "api.perplexity.ai",
    "api.fireworks.ai",
    "api.replicate.com",
    "api-inference.huggingface.co",
    "router.huggingface.co",
    "api.cerebras.ai",
    "api.moonshot.ai",
    "dashscope.aliyuncs.com",
    "api.ai21.com",
    "api.voyageai.com",
];

/// Whether `host` is in the AI catalogue.
pub fn is_ai_host(host: &str) -> bool {
    AI_CATALOGUE.iter().any(|p| glob_match(p, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.openai.azure.com", "x.openai.azure.com"));
        assert!(!glob_match("*.openai.azure.com", "openai.azure.com.evil"));
        assert!(glob_match(
            "bedrock-runtime.*.amazonaws.com",
            "bedrock-runtime.us-east-1.amazonaws.com"
        ));
        assert!(glob_match("secret.*", "secret.aws_access_key_id"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("MESSAGES*", "messages[0].content"));
        assert!(!glob_match("pii.*", "secret.x"));
    }

    #[test]
    fn catalogue() {
        assert!(is_ai_host("api.mistral.ai"));
        assert!(is_ai_host("us-central1-aiplatform.googleapis.com"));
        assert!(!is_ai_host("github.com"));
    }
}
