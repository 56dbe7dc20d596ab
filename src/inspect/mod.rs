//! Inspection: decode request bodies and read them the way each provider's API means them.
//!
//! [`decode`] undoes content-encodings and charsets; [`providers`] walk each API's fields and
//! produce [`content::Segment`]s (decoded text, JSON path, map back to the raw bytes). Nothing
//! here decides anything or changes a byte: that is `policy` and `act`.

pub mod content;
pub mod decode;
pub mod json;
pub mod pdf;
pub mod providers;

/// The API family a destination speaks; decides how a body is read and how errors are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Anthropic,
    OpenAi,
    Gemini,
    Bedrock,
    /// Any other destination: every JSON string leaf (or the raw text) is scanned.
    Generic,
}

impl Provider {
    /// The provider a host name belongs to. Azure OpenAI speaks the OpenAI API; Vertex AI's
    /// Gemini endpoints speak Gemini's.
    pub fn from_host(host: &str) -> Self {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let is = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        if is("anthropic.com") {
            Provider::Anthropic
        } else if is("openai.com") || is("openai.azure.com") {
            Provider::OpenAi
        } else if host == "generativelanguage.googleapis.com"
            || host.ends_with("aiplatform.googleapis.com")
        {
            Provider::Gemini
        } else if host.starts_with("bedrock-runtime.") && host.ends_with(".amazonaws.com") {
            Provider::Bedrock
        } else {
            Provider::Generic
        }
    }

    /// Lower-case name used in audit records, metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
            Provider::Gemini => "gemini",
            Provider::Bedrock => "bedrock",
            Provider::Generic => "generic",
        }
    }
}
