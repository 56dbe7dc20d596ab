//! Held-out style recall and precision: credentials the rules' own cases never showed them.
//!
//! A seeded generator makes tokens of each provider's *documented* shape (prefix, length,
//! alphabet, checksum) and leaks each one the ways people actually leak them: a `.env` line, an
//! `export`, YAML, JSON (compact, pretty, and escaped inside an agent request's JSON), source
//! code assignments and SDK constructor arguments, curl headers, URL query strings, Markdown,
//! shell history, log lines, Dockerfile `ENV`, a Terraform default, a Kubernetes Secret (base64).
//! Every leak must be reported by the provider's own detector at exactly the token's bytes.
//! Then the look-alikes that fill real repositories (UUIDs, SHAs, lockfile integrity hashes,
//! image digests, colours, i18n keys, placeholder keys, broken checksums, ULIDs, JWT-shaped
//! strings whose header is not JSON) must not be reported at all.
//!
//! The values are random of the right shape, made up here: none is a real credential.

use std::ops::Range;

use base64::Engine as _;
use egress_guard::detect::{Finding, Scanner};

#[path = "support/samples.rs"]
mod samples;
use samples::{checksummed_token, Rng, ALNUM};

const URLSAFE: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";
const B64: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/";
const UPPER_B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const DIGITS: &[u8] = b"0123456789";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One provider: how its token looks and how code around it names it.
struct Provider {
    detector: &'static str,
    /// The environment variable its docs tell people to set.
    var: &'static str,
    /// `client = <ctor>(api_key="...")` as its SDK is called.
    ctor: &'static str,
    /// API host, for curl and URL samples.
    host: &'static str,
    make: fn(&mut Rng) -> String,
    /// The token has no distinctive prefix: only text naming the provider makes it one. In
    /// leaks where nothing names the provider (a bare bearer header) a generic detector
    /// reporting the same bytes counts as found.
    contextual: bool,
}

fn providers() -> Vec<Provider> {
    macro_rules! p {
        ($det:expr, $var:expr, $ctor:expr, $host:expr, $ctx:expr, $make:expr) => {
            Provider {
                detector: $det,
                var: $var,
                ctor: $ctor,
                host: $host,
                make: $make,
                contextual: $ctx,
            }
        };
    }
    vec![
        // AI providers first.
        p!(
            "secret.anthropic_api_key",
            "ANTHROPIC_API_KEY",
            "anthropic.Anthropic",
            "api.anthropic.com",
            false,
            |r| format!("sk-ant-api03-{}AA", r.string(URLSAFE, 93))
        ),
        p!(
            "secret.anthropic_admin_key",
            "ANTHROPIC_ADMIN_KEY",
            "anthropic.Anthropic",
            "api.anthropic.com",
            false,
            |r| format!("sk-ant-admin01-{}AA", r.string(URLSAFE, 93))
        ),
        p!(
            "secret.openai_project_key",
            "OPENAI_API_KEY",
            "OpenAI",
            "api.openai.com",
            false,
            |r| format!(
                "sk-proj-{}T3BlbkFJ{}",
                r.string(URLSAFE, 74),
                r.string(URLSAFE, 74)
            )
        ),
        p!(
            "secret.openai_project_key",
            "OPENAI_API_KEY",
            "OpenAI",
            "api.openai.com",
            false,
            |r| format!(
                "sk-svcacct-{}T3BlbkFJ{}",
                r.string(URLSAFE, 74),
                r.string(URLSAFE, 74)
            )
        ),
        p!(
            "secret.openai_admin_key",
            "OPENAI_ADMIN_KEY",
            "OpenAI",
            "api.openai.com",
            false,
            |r| format!(
                "sk-admin-{}T3BlbkFJ{}",
                r.string(URLSAFE, 58),
                r.string(URLSAFE, 58)
            )
        ),
        p!(
            "secret.openai_api_key_legacy",
            "OPENAI_API_KEY",
            "OpenAI",
            "api.openai.com",
            false,
            |r| format!("sk-{}T3BlbkFJ{}", r.alnum(20), r.alnum(20))
        ),
        p!(
            "secret.google_api_key",
            "GEMINI_API_KEY",
            "genai.Client",
            "generativelanguage.googleapis.com",
            false,
            |r| format!("AIza{}", r.string(URLSAFE, 35))
        ),
        p!(
            "secret.huggingface_token",
            "HF_TOKEN",
            "InferenceClient",
            "huggingface.co",
            false,
            |r| format!("hf_{}", r.alnum(34))
        ),
        p!(
            "secret.groq_api_key",
            "GROQ_API_KEY",
            "Groq",
            "api.groq.com",
            false,
            |r| format!("gsk_{}", r.alnum(52))
        ),
        p!(
            "secret.mistral_api_key",
            "MISTRAL_API_KEY",
            "Mistral",
            "api.mistral.ai",
            true,
            |r| r.alnum(32)
        ),
        p!(
            "secret.cohere_api_key",
            "COHERE_API_KEY",
            "cohere.ClientV2",
            "api.cohere.com",
            true,
            |r| r.alnum(40)
        ),
        p!(
            "secret.replicate_api_token",
            "REPLICATE_API_TOKEN",
            "replicate.Client",
            "api.replicate.com",
            false,
            |r| format!("r8_{}", r.alnum(37))
        ),
        p!(
            "secret.perplexity_api_key",
            "PERPLEXITY_API_KEY",
            "Perplexity",
            "api.perplexity.ai",
            false,
            |r| format!("pplx-{}", r.alnum(48))
        ),
        p!(
            "secret.xai_api_key",
            "XAI_API_KEY",
            "xai_sdk.Client",
            "api.x.ai",
            false,
            |r| format!("xai-{}", r.alnum(80))
        ),
        p!(
            "secret.deepseek_api_key",
            "DEEPSEEK_API_KEY",
            "DeepSeekClient",
            "api.deepseek.com",
            true,
            |r| format!("sk-{}", r.hex(32))
        ),
        p!(
            "secret.openrouter_api_key",
            "OPENROUTER_API_KEY",
            "OpenRouter",
            "openrouter.ai",
            false,
            |r| format!("sk-or-v1-{}", r.hex(64))
        ),
        p!(
            "secret.azure_openai_key",
            "AZURE_OPENAI_API_KEY",
            "AzureOpenAI",
            "myres.openai.azure.com",
            true,
            |r| r.hex(32)
        ),
        p!(
            "secret.azure_openai_key",
            "AZURE_OPENAI_API_KEY",
            "AzureOpenAI",
            "myres.openai.azure.com",
            true,
            |r| format!("{}JQQJ99BAACYeBjFXJ3w3AAABACOG{}", r.alnum(20), r.alnum(36))
        ),
        p!(
            "secret.together_api_key",
            "TOGETHER_API_KEY",
            "Together",
            "api.together.xyz",
            false,
            |r| format!("tgp_v1_{}", r.string(URLSAFE, 43))
        ),
        p!(
            "secret.fireworks_api_key",
            "FIREWORKS_API_KEY",
            "Fireworks",
            "api.fireworks.ai",
            false,
            |r| format!("fw_{}", r.alnum(24))
        ),
        p!(
            "secret.elevenlabs_api_key",
            "ELEVENLABS_API_KEY",
            "ElevenLabs",
            "api.elevenlabs.io",
            false,
            |r| format!("sk_{}", r.hex(48))
        ),
        p!(
            "secret.langsmith_api_key",
            "LANGSMITH_API_KEY",
            "langsmith.Client",
            "api.smith.langchain.com",
            false,
            |r| format!("lsv2_pt_{}_{}", r.hex(32), r.hex(10))
        ),
        p!(
            "secret.pinecone_api_key",
            "PINECONE_API_KEY",
            "Pinecone",
            "api.pinecone.io",
            false,
            |r| format!("pcsk_{}_{}", r.alnum(6), r.alnum(63))
        ),
        p!(
            "secret.tavily_api_key",
            "TAVILY_API_KEY",
            "TavilyClient",
            "api.tavily.com",
            false,
            |r| format!("tvly-dev-{}", r.alnum(32))
        ),
        p!(
            "secret.cerebras_api_key",
            "CEREBRAS_API_KEY",
            "Cerebras",
            "api.cerebras.ai",
            false,
            |r| format!(
                "csk-{}",
                r.string(b"abcdefghijklmnopqrstuvwxyz0123456789", 48)
            )
        ),
        // Cloud.
        p!(
            "secret.aws_access_key_id",
            "AWS_ACCESS_KEY_ID",
            "boto3.client",
            "sts.amazonaws.com",
            false,
            |r| format!("AKIA{}", r.string(UPPER_B32, 16))
        ),
        p!(
            "secret.gcp_hmac_access_id",
            "GCS_HMAC_ACCESS_ID",
            "storage.Client",
            "storage.googleapis.com",
            false,
            |r| format!("GOOG1{}", r.string(UPPER_B32, 56))
        ),
        p!(
            "secret.gcp_oauth_client_secret",
            "GOOGLE_CLIENT_SECRET",
            "Flow.from_client_config",
            "oauth2.googleapis.com",
            false,
            |r| format!("GOCSPX-{}", r.string(URLSAFE, 28))
        ),
        p!(
            "secret.azure_ad_client_secret",
            "AZURE_CLIENT_SECRET",
            "ClientSecretCredential",
            "login.microsoftonline.com",
            false,
            |r| format!(
                "{}{}Q~{}",
                r.string(URLSAFE, 3),
                r.below(10),
                r.string(
                    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_~.-",
                    34
                )
            )
        ),
        p!(
            "secret.digitalocean_pat",
            "DIGITALOCEAN_TOKEN",
            "pydo.Client",
            "api.digitalocean.com",
            false,
            |r| format!("dop_v1_{}", r.hex(64))
        ),
        p!(
            "secret.heroku_api_key",
            "HEROKU_API_KEY",
            "heroku3.from_key",
            "api.heroku.com",
            false,
            |r| format!("HRKU-AA{}", r.string(URLSAFE, 58))
        ),
        p!(
            "secret.supabase_pat",
            "SUPABASE_ACCESS_TOKEN",
            "SupabaseManagement",
            "api.supabase.com",
            false,
            |r| format!("sbp_{}", r.hex(40))
        ),
        // Source hosting, packages, CI.
        p!(
            "secret.github_pat_classic",
            "GITHUB_TOKEN",
            "Github",
            "api.github.com",
            false,
            |r| checksummed_token(r, "ghp_", true)
        ),
        p!(
            "secret.github_oauth_token",
            "GH_TOKEN",
            "Github",
            "api.github.com",
            false,
            |r| checksummed_token(r, "gho_", true)
        ),
        p!(
            "secret.github_server_to_server_token",
            "GITHUB_TOKEN",
            "Github",
            "api.github.com",
            false,
            |r| checksummed_token(r, "ghs_", true)
        ),
        p!(
            "secret.github_fine_grained_pat",
            "GITHUB_TOKEN",
            "Github",
            "api.github.com",
            false,
            |r| format!(
                "github_pat_11{}_{}",
                r.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 20),
                r.alnum(59)
            )
        ),
        p!(
            "secret.gitlab_pat",
            "GITLAB_TOKEN",
            "gitlab.Gitlab",
            "gitlab.com",
            false,
            |r| format!("glpat-{}", r.string(URLSAFE, 20))
        ),
        p!(
            "secret.gitlab_pat",
            "GITLAB_TOKEN",
            "gitlab.Gitlab",
            "gitlab.com",
            false,
            |r| format!(
                "glpat-{}.01.{}",
                r.string(URLSAFE, 36),
                r.string(b"0123456789abcdefghijklmnopqrstuvwxyz", 9)
            )
        ),
        p!(
            "secret.npm_token",
            "NPM_TOKEN",
            "RegClient",
            "registry.npmjs.org",
            false,
            |r| checksummed_token(r, "npm_", true)
        ),
        p!(
            "secret.pypi_token",
            "PYPI_TOKEN",
            "Twine",
            "upload.pypi.org",
            false,
            |r| {
                let mut body = vec![0x02, 0x01, 0x08];
                body.extend_from_slice(b"pypi.org");
                body.extend_from_slice(&[0x02, 0x25]);
                body.extend_from_slice(br#"{"version": 1, "permissions": "user"}"#);
                body.extend((0..120).map(|_| r.next() as u8));
                format!("pypi-{}", b64url(&body))
            }
        ),
        p!(
            "secret.docker_hub_token",
            "DOCKERHUB_TOKEN",
            "docker.from_env",
            "hub.docker.com",
            false,
            |r| format!("dckr_pat_{}", r.string(URLSAFE, 27))
        ),
        p!(
            "secret.vault_service_token",
            "VAULT_TOKEN",
            "hvac.Client",
            "vault.internal",
            false,
            |r| format!("hvs.{}", r.string(URLSAFE, 90))
        ),
        p!(
            "secret.terraform_cloud_token",
            "TFE_TOKEN",
            "TFC",
            "app.terraform.io",
            false,
            |r| format!("{}.atlasv1.{}", r.alnum(14), r.alnum(67))
        ),
        p!(
            "secret.doppler_token",
            "DOPPLER_TOKEN",
            "DopplerSDK",
            "api.doppler.com",
            false,
            |r| format!("dp.st.prd.{}", r.alnum(43))
        ),
        p!(
            "secret.postman_api_key",
            "POSTMAN_API_KEY",
            "Postman",
            "api.getpostman.com",
            false,
            |r| format!("PMAK-{}-{}", r.hex(24), r.hex(34))
        ),
        // Messaging, payments, SaaS, observability.
        p!(
            "secret.slack_bot_token",
            "SLACK_BOT_TOKEN",
            "WebClient",
            "slack.com",
            false,
            |r| format!(
                "xoxb-{}-{}-{}",
                r.string(DIGITS, 12),
                r.string(DIGITS, 13),
                r.alnum(24)
            )
        ),
        p!(
            "secret.slack_user_token",
            "SLACK_USER_TOKEN",
            "WebClient",
            "slack.com",
            false,
            |r| format!(
                "xoxp-{}-{}-{}-{}",
                r.string(DIGITS, 12),
                r.string(DIGITS, 12),
                r.string(DIGITS, 13),
                r.hex(32)
            )
        ),
        p!(
            "secret.slack_app_token",
            "SLACK_APP_TOKEN",
            "SocketModeClient",
            "slack.com",
            false,
            |r| format!(
                "xapp-1-A{}-{}-{}",
                r.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
                r.string(DIGITS, 13),
                r.hex(64)
            )
        ),
        p!(
            "secret.stripe_live_secret_key",
            "STRIPE_SECRET_KEY",
            "StripeClient",
            "api.stripe.com",
            false,
            |r| format!("sk_live_51{}", r.alnum(97))
        ),
        p!(
            "secret.stripe_restricted_key",
            "STRIPE_RESTRICTED_KEY",
            "StripeClient",
            "api.stripe.com",
            false,
            |r| format!("rk_live_51{}", r.alnum(97))
        ),
        p!(
            "secret.stripe_webhook_secret",
            "STRIPE_WEBHOOK_SECRET",
            "Webhook",
            "api.stripe.com",
            false,
            |r| format!("whsec_{}", r.alnum(32))
        ),
        p!(
            "secret.sendgrid_api_key",
            "SENDGRID_API_KEY",
            "SendGridAPIClient",
            "api.sendgrid.com",
            false,
            |r| format!("SG.{}.{}", r.string(URLSAFE, 22), r.string(URLSAFE, 43))
        ),
        p!(
            "secret.twilio_api_key",
            "TWILIO_API_KEY",
            "twilio.rest.Client",
            "api.twilio.com",
            true,
            |r| format!("SK{}", r.hex(32))
        ),
        p!(
            "secret.twilio_auth_token",
            "TWILIO_AUTH_TOKEN",
            "twilio.rest.Client",
            "api.twilio.com",
            true,
            |r| r.hex(32)
        ),
        p!(
            "secret.shopify_access_token",
            "SHOPIFY_ACCESS_TOKEN",
            "shopify.Session",
            "myshop.myshopify.com",
            false,
            |r| format!("shpat_{}", r.hex(32))
        ),
        p!(
            "secret.datadog_api_key",
            "DD_API_KEY",
            "datadog_api_client.Configuration",
            "api.datadoghq.com",
            true,
            |r| r.hex(32)
        ),
        p!(
            "secret.datadog_app_key",
            "DD_APP_KEY",
            "datadog_api_client.Configuration",
            "api.datadoghq.com",
            true,
            |r| r.hex(40)
        ),
        p!(
            "secret.mailgun_api_key",
            "MAILGUN_API_KEY",
            "mailgun.Client",
            "api.mailgun.net",
            true,
            |r| format!("{}-{}-{}", r.hex(32), r.hex(8), r.hex(8))
        ),
        p!(
            "secret.mailchimp_api_key",
            "MAILCHIMP_API_KEY",
            "MailchimpMarketing.Client",
            "us21.api.mailchimp.com",
            false,
            |r| format!("{}-us{}", r.hex(32), 1 + r.below(21))
        ),
        p!(
            "secret.telegram_bot_token",
            "TELEGRAM_BOT_TOKEN",
            "telegram.Bot",
            "api.telegram.org",
            false,
            |r| format!("{}:AA{}", r.string(DIGITS, 10), r.string(URLSAFE, 33))
        ),
        p!(
            "secret.linear_api_key",
            "LINEAR_API_KEY",
            "LinearClient",
            "api.linear.app",
            false,
            |r| format!("lin_api_{}", r.alnum(40))
        ),
        p!(
            "secret.notion_token",
            "NOTION_TOKEN",
            "notion_client.Client",
            "api.notion.com",
            false,
            |r| format!("ntn_{}{}", r.string(DIGITS, 11), r.alnum(35))
        ),
        p!(
            "secret.atlassian_api_token",
            "JIRA_API_TOKEN",
            "JIRA",
            "myorg.atlassian.net",
            false,
            |r| format!(
                "ATATT3xFfGF0{}={}",
                r.string(URLSAFE, 170),
                r.string(b"0123456789ABCDEF", 8)
            )
        ),
        p!(
            "secret.airtable_pat",
            "AIRTABLE_API_KEY",
            "pyairtable.Api",
            "api.airtable.com",
            false,
            |r| format!("pat{}.{}", r.alnum(14), r.hex(64))
        ),
        p!(
            "secret.sentry_user_token",
            "SENTRY_AUTH_TOKEN",
            "SentryCli",
            "sentry.io",
            false,
            |r| format!("sntryu_{}", r.hex(64))
        ),
        p!(
            "secret.newrelic_user_api_key",
            "NEW_RELIC_API_KEY",
            "NerdGraph",
            "api.newrelic.com",
            false,
            |r| format!(
                "NRAK-{}",
                r.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 27)
            )
        ),
        p!(
            "secret.grafana_service_account_token",
            "GRAFANA_TOKEN",
            "GrafanaApi",
            "myorg.grafana.net",
            false,
            |r| format!("glsa_{}_{}", r.alnum(32), r.hex(8))
        ),
        p!(
            "secret.databricks_token",
            "DATABRICKS_TOKEN",
            "WorkspaceClient",
            "adb-1234.azuredatabricks.net",
            false,
            |r| format!("dapi{}", r.hex(32))
        ),
        p!(
            "secret.github_user_to_server_token",
            "GITHUB_TOKEN",
            "Github",
            "api.github.com",
            false,
            |r| checksummed_token(r, "ghu_", true)
        ),
        p!(
            "secret.anthropic_oauth_token",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "anthropic.Anthropic",
            "api.anthropic.com",
            false,
            |r| format!("sk-ant-oat01-{}AA", r.string(URLSAFE, 93))
        ),
        p!(
            "secret.google_oauth_access_token",
            "GOOGLE_ACCESS_TOKEN",
            "Credentials",
            "www.googleapis.com",
            false,
            |r| format!("ya29.a0{}", r.string(URLSAFE, 150))
        ),
        p!(
            "secret.age_secret_key",
            "SOPS_AGE_KEY",
            "Decrypter",
            "age.internal",
            false,
            |r| format!(
                "AGE-SECRET-KEY-1{}",
                r.string(b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)
            )
        ),
        p!(
            "secret.huggingface_org_token",
            "HF_ORG_TOKEN",
            "InferenceClient",
            "huggingface.co",
            false,
            |r| format!("api_org_{}", r.alnum(34))
        ),
        p!(
            "secret.cloudflare_api_token",
            "CLOUDFLARE_API_TOKEN",
            "Cloudflare",
            "api.cloudflare.com",
            true,
            |r| r.string(URLSAFE, 40)
        ),
        p!(
            "secret.azure_devops_pat",
            "AZURE_DEVOPS_PAT",
            "Connection",
            "dev.azure.com",
            false,
            |r| format!("{}AZDO{}", r.alnum(76), r.alnum(4))
        ),
        p!(
            "secret.square_access_token",
            "SQUARE_ACCESS_TOKEN",
            "Client",
            "connect.squareup.com",
            false,
            |r| format!("EAAA{}", r.string(URLSAFE, 60))
        ),
        p!(
            "secret.figma_token",
            "FIGMA_TOKEN",
            "FigmaApi",
            "api.figma.com",
            false,
            |r| format!("figd_{}", r.string(URLSAFE, 40))
        ),
        p!(
            "secret.netlify_token",
            "NETLIFY_AUTH_TOKEN",
            "NetlifyAPI",
            "api.netlify.com",
            false,
            |r| format!("nfp_{}", r.alnum(36))
        ),
        p!(
            "secret.vercel_prefixed_token",
            "VERCEL_TOKEN",
            "Vercel",
            "api.vercel.com",
            false,
            |r| format!("vcp_{}", r.alnum(56))
        ),
        p!(
            "secret.resend_api_key",
            "RESEND_API_KEY",
            "Resend",
            "api.resend.com",
            false,
            |r| format!("re_{}_{}", r.alnum(8), r.alnum(24))
        ),
        p!(
            "secret.hubspot_private_app_token",
            "HUBSPOT_ACCESS_TOKEN",
            "HubSpot",
            "api.hubapi.com",
            false,
            |r| format!(
                "pat-na1-{}-{}-{}-{}-{}",
                r.hex(8),
                r.hex(4),
                r.hex(4),
                r.hex(4),
                r.hex(12)
            )
        ),
        p!(
            "secret.okta_api_token",
            "OKTA_API_TOKEN",
            "OktaClient",
            "acme.okta.com",
            true,
            |r| format!("00{}", r.string(URLSAFE, 40))
        ),
    ]
}

/// A leak to look for: `text` contains `value` once; `detectors` lists who may report it.
struct Sample {
    what: String,
    text: String,
    expect: Vec<(Vec<&'static str>, Range<usize>)>,
    /// A finding whose span holds the expected one counts too: the value sits inside a blob
    /// the scanner decodes (a URL-encoded URL), and a finding there covers the whole blob.
    within: bool,
}

fn span_of(text: &str, value: &str) -> Range<usize> {
    let start = text.find(value).expect("value is in the sample");
    start..start + value.len()
}

fn lower_camel(var: &str) -> String {
    let mut out = String::new();
    for (i, part) in var.split('_').enumerate() {
        let part = part.to_ascii_lowercase();
        if i == 0 {
            out.push_str(&part);
        } else {
            let mut c = part.chars();
            if let Some(f) = c.next() {
                out.push(f.to_ascii_uppercase());
                out.extend(c);
            }
        }
    }
    out
}

const GENERIC: &[&str] = &[
    "secret.authorization_bearer",
    "secret.generic_api_key_quoted",
    "secret.generic_api_key_unquoted",
    "secret.generic_password_quoted",
    "secret.generic_password_unquoted",
    "secret.generic_api_key_header",
    "secret.generic_url_query_key",
    "secret.generic_name_value_pair",
    "secret.generic_terraform_default",
    "secret.generic_key_value_inline",
    "secret.generic_password_inline",
    "secret.xml_setting_secret",
    "secret.xml_element_password",
    "secret.curl_user_credentials",
    "secret.generic_cli_flag",
    "secret.generic_auth_call",
    "secret.xml_string_secret",
];

/// Contexts of [`more_leaks`] measured and reported but not asserted. Three the rules cannot
/// fix: a token glued to a colour escape written as JSON's `\u001b[1m` in raw JSON (the
/// escape's final `m` is a word byte, so a rule's leading `\b` fails; folding drops the raw
/// escape, `\x1b[1m`, but reads no JSON), base64 wrapped at 76 columns (`base64` without `-w0`: each line is
/// decoded on its own, so a token longer than 57 bytes is cut in pieces) and HTML entities
/// (`&quot;`: not decoded, so a quoted name/value pair is not seen as one). Two left on
/// purpose: prose naming a variable (`I set ACME_API_KEY to ...`), where a token with no prefix
/// of its own would need a rule reading English, and a YAML flow mapping (`{ acme_api_key: v }`),
/// which reads like a JavaScript object holding a variable.
const ENGINE_LIMITS: &[&str] = &[
    "ansi in tool result",
    "base64 wrapped at 76",
    "html entities",
    "env prose",
    "yaml flow mapping",
];

/// Of [`ENGINE_LIMITS`], those where a token with a prefix of its own is found (and asserted):
/// only tokens that need their provider's name or a generic rule are out of reach.
const LIMITS_FOR_CONTEXT_ONLY: &[&str] = &["html entities", "env prose", "yaml flow mapping"];

/// Every way of leaking one token: `(name, text)`; the token appears in `text` verbatim except
/// in the Kubernetes Secret, where the base64 of it does (returned as the third element).
fn leaks(p: &Provider, tok: &str) -> Vec<(&'static str, String, Option<String>)> {
    let var = p.var;
    let low = var.to_ascii_lowercase();
    let camel = lower_camel(var);
    let ctor = p.ctor;
    let host = p.host;
    let pretty = format!(
        "{{\n  \"name\": \"svc\",\n  \"{low}\": \"{tok}\",\n  \"region\": \"eu-west-1\"\n}}\n"
    );
    let request = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": format!("Here is my config.json, why does it fail?\n\n{pretty}")}],
    })
    .to_string();
    let tool_result = serde_json::json!({
        "type": "tool_result",
        "content": serde_json::json!({"stdout": format!("{var}={tok}\nPATH=/usr/bin\n")}).to_string(),
    })
    .to_string();
    let k8s_value = b64(tok.as_bytes());
    // In a URL the base64 characters `+ / =` travel percent-encoded.
    let query_value = tok
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    vec![
        ("dotenv", format!("# local\nDEBUG=true\n{var}={tok}\nPORT=8080\n"), None),
        ("dotenv quoted", format!("{var}=\"{tok}\"\n"), None),
        ("export", format!("export {var}={tok}\n"), None),
        ("export quoted", format!("export {var}='{tok}'\n"), None),
        ("yaml", format!("services:\n  api:\n    {low}: {tok}\n    timeout: 30\n"), None),
        ("yaml quoted", format!("env:\n  - name: {var}\n    value: \"{tok}\"\n"), None),
        ("json compact", format!("{{\"{low}\":\"{tok}\",\"debug\":false}}"), None),
        ("json pretty", pretty.clone(), None),
        ("json in agent request", request, None),
        ("json in tool result", tool_result, None),
        ("python ctor", format!("import os\nclient = {ctor}(api_key=\"{tok}\")\n"), None),
        ("python constant", format!("{var} = \"{tok}\"\n"), None),
        ("python environ", format!("os.environ[\"{var}\"] = \"{tok}\"\n"), None),
        ("js const", format!("const {camel} = \"{tok}\";\n"), None),
        ("js process.env", format!("process.env.{var} = '{tok}';\n"), None),
        ("js ctor", format!("const client = new {ctor}({{ apiKey: \"{tok}\" }});\n"), None),
        ("go", format!("\t{camel} := \"{tok}\"\n"), None),
        ("go setenv", format!("\tos.Setenv(\"{var}\", \"{tok}\")\n"), None),
        ("rust const", format!("const {var}: &str = \"{tok}\";\n"), None),
        ("typescript typed", format!("export const {camel}: string = \"{tok}\";\n"), None),
        ("python typed", format!("class Settings(BaseSettings):\n    {low}: str = \"{tok}\"\n"), None),
        ("java constant", format!("    private static final String {var} = \"{tok}\";\n"), None),
        ("php define", format!("define('{var}', '{tok}');\n"), None),
        ("php array", format!("    '{low}' => '{tok}',\n"), None),
        ("ruby env", format!("ENV['{var}'] = '{tok}'\n"), None),
        ("curl bearer", format!("curl https://{host}/v1/models \\\n  -H \"Authorization: Bearer {tok}\"\n"), None),
        ("curl x-api-key", format!("curl -s https://{host}/v1/messages -H \"x-api-key: {tok}\" -d @req.json\n"), None),
        ("url query", format!("GET https://{host}/v1/items?key={query_value}&alt=json\n"), (query_value != tok).then(|| query_value.clone())),
        ("markdown", format!("To run it locally:\n\n```bash\nexport {var}={tok}\nnpm start\n```\n"), None),
        ("shell history", format!("  501  cd app\n  502  {var}={tok} python main.py\n"), None),
        ("log line", format!("2025-03-04T10:22:01Z DEBUG loaded settings {low}={tok} region=eu\n"), None),
        ("dockerfile", format!("FROM python:3.12-slim\nENV {var}={tok}\nCMD [\"python\", \"app.py\"]\n"), None),
        ("dockerfile space", format!("ENV {var} {tok}\n"), None),
        ("terraform", format!("variable \"{low}\" {{\n  type    = string\n  default = \"{tok}\"\n}}\n"), None),
        ("k8s stringData", format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  {var}: {tok}\n"), None),
        ("k8s data base64", format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ntype: Opaque\ndata:\n  {var}: {k8s_value}\n"), Some(k8s_value.clone())),
    ]
}

/// A leak in one of the contexts `more_leaks` writes: the bytes a detector must report (the
/// token, or its encoded form), and who besides the provider's own rule may report them.
struct Leak {
    how: &'static str,
    text: String,
    value: String,
    /// Detectors that may report `value` whoever the provider is (a Basic header's base64).
    also: &'static [&'static str],
    /// Text next to the value names what it is (`NAME=value`, `"name": "value"`): a generic
    /// rule can see it. False where only the token's own shape can (a bare line, `-u user:tok`).
    named: bool,
    /// See [`Sample::within`].
    within: bool,
}

fn upper_camel(var: &str) -> String {
    let camel = lower_camel(var);
    let mut c = camel.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The contexts session 8 added: terminal captures with colour escapes, Markdown tables,
/// XML/HTML attributes, `.properties`/INI/TOML, PowerShell and `cmd`, CI and Compose YAML,
/// unified diffs, notebooks, Python reprs in tracebacks, URL-encoded forms, `curl -u`, Basic
/// headers, Terraform state, YAML block scalars, CRLF files, systemd units, `kubectl`, ...
fn more_leaks(p: &Provider, tok: &str) -> Vec<Leak> {
    let var = p.var;
    let low = var.to_ascii_lowercase();
    let pascal = upper_camel(var);
    let kebab = low.replace('_', "-");
    let dotted = low.replace('_', ".");
    let service = upper_camel(var.split('_').next().unwrap_or(var));
    let ctor = p.ctor;
    let host = p.host;
    let query_value = tok
        .replace('%', "%25")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    // The value a provider rule reports in a URL: up to the first percent-escape (a generic
    // rule reads the whole parameter).
    let generic = p.detector == "secret.generic_api_key_quoted";
    let url_value = |v: &str| match generic {
        true => v.to_string(),
        false => v[..v.find('%').unwrap_or(v.len())].to_string(),
    };
    let basic = b64(format!("deploy:{tok}").as_bytes());
    let wrapped = b64(tok.as_bytes())
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    let ansi_tool = serde_json::json!({
        "type": "tool_result",
        "content": format!("\x1b[1m$ cat .env\x1b[0m\n\x1b[33m{var}\x1b[0m=\x1b[32m{tok}\x1b[0m\nPORT=8080\n"),
    })
    .to_string();
    let notebook = serde_json::json!({
        "cells": [{
            "cell_type": "code",
            "execution_count": 3,
            "metadata": {},
            "outputs": [],
            "source": ["import os\n", format!("os.environ[\"{var}\"] = \"{tok}\"\n"), format!("client = {ctor}()")],
        }],
        "nbformat": 4,
    })
    .to_string();
    let tf_state = format!(
        "{{\n  \"version\": 4,\n  \"terraform_version\": \"1.9.5\",\n  \"resources\": [\n    {{\n      \"mode\": \"managed\",\n      \"type\": \"acme_integration\",\n      \"name\": \"main\",\n      \"instances\": [\n        {{\n          \"attributes\": {{\n            \"id\": \"int-7741\",\n            \"{low}\": \"{tok}\",\n            \"region\": \"eu-west-1\"\n          }},\n          \"sensitive_attributes\": []\n        }}\n      ]\n    }}\n  ]\n}}\n"
    );
    let twice = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": serde_json::json!({"type": "tool_result", "content": format!("{var}={tok}\n")}).to_string()}],
    })
    .to_string();
    let l = |how: &'static str, text: String| Leak {
        how,
        text,
        value: tok.to_string(),
        also: &[],
        named: true,
        within: false,
    };
    let bare = |how: &'static str, text: String| Leak {
        how,
        text,
        value: tok.to_string(),
        also: &[],
        named: false,
        within: false,
    };
    vec![
        l("ansi log", format!("\x1b[2m2025-03-04T10:22:01Z\x1b[0m \x1b[32mINFO\x1b[0m loaded settings {low}={tok} region=eu\n")),
        bare("ansi bare", format!("\x1b[32m[ok]\x1b[0m Created {var}:\n  \x1b[1m{tok}\x1b[0m\n")),
        l("ansi in tool result", ansi_tool),
        l("markdown table", format!("| Variable | Value |\n| --- | --- |\n| {var} | {tok} |\n| DEBUG | true |\n")),
        l("markdown table code", format!("| `{var}` | `{tok}` | production |\n")),
        l("xml add key", format!("<appSettings>\n  <add key=\"{pascal}\" value=\"{tok}\" />\n</appSettings>\n")),
        l("html data attribute", format!("<div id=\"root\" data-{kebab}=\"{tok}\"></div>\n")),
        l("html input", format!("<input type=\"hidden\" name=\"{low}\" value=\"{tok}\">\n")),
        l("java properties", format!("app.name=shop\n{dotted}={tok}\n")),
        l("java properties colon", format!("{dotted}: {tok}\n")),
        l("ini", format!("[credentials]\n{low} = {tok}\ntimeout = 30\n")),
        l("ini colon", format!("[{service}]\n{low}: {tok}\n")),
        l("toml", format!("[env]\n{var} = \"{tok}\"\n")),
        l("toml table", format!("[tool.app.{}]\napi_key = \"{tok}\"\n", service.to_ascii_lowercase())),
        l("powershell env", format!("PS C:\\app> $env:{var} = \"{tok}\"\n")),
        l("powershell env single", format!("$env:{var}='{tok}'\n")),
        l("powershell setenv", format!("[Environment]::SetEnvironmentVariable(\"{var}\", \"{tok}\", \"User\")\n")),
        l("windows set", format!("C:\\app> set {var}={tok}\n")),
        l("windows setx", format!("setx {var} \"{tok}\"\n")),
        l("github actions env", format!("jobs:\n  test:\n    runs-on: ubuntu-latest\n    env:\n      {var}: {tok}\n    steps:\n      - run: npm test\n")),
        l("compose environment list", format!("services:\n  app:\n    image: acme/app:1.4\n    environment:\n      - {var}={tok}\n      - LOG_LEVEL=debug\n")),
        l("compose environment map", format!("    environment:\n      {var}: \"{tok}\"\n")),
        l("diff added", format!("--- a/.env\n+++ b/.env\n@@ -1,2 +1,2 @@\n DEBUG=true\n-{var}=\n+{var}={tok}\n")),
        l("diff removed", format!("@@ -3,1 +3,1 @@\n-{var}={tok}\n+{var}=${{{var}}}\n")),
        l("diff code", format!("@@ -10,3 +10,3 @@\n-    client = {ctor}()\n+    client = {ctor}(api_key=\"{tok}\")\n")),
        l("jupyter cell", notebook),
        l("traceback dict repr", format!("Traceback (most recent call last):\n  File \"/app/main.py\", line 42, in <module>\n    client.connect()\nConnectionError: bad config {{'{low}': '{tok}', 'timeout': 30}}\n")),
        l("log headers repr", format!("2025-03-04 10:22:01,123 DEBUG send headers={{'Authorization': 'Bearer {tok}', 'User-Agent': 'python-requests/2.32.3'}}\n")),
        Leak {
            how: "url-encoded nested",
            text: format!("GET /login?next=https%3A%2F%2F{host}%2Fv1%2Fitems%3F{low}%3D{}%26page%3D2 HTTP/1.1\n", query_value.replace('%', "%25")),
            value: url_value(&query_value.replace('%', "%25")),
            also: &[],
            named: true,
            within: true,
        },
        Leak {
            how: "form body",
            text: format!("curl -X POST https://{host}/v1/session -d \"grant_type=client_credentials&{low}={query_value}&scope=all\"\n"),
            value: url_value(&query_value),
            also: &[],
            named: true,
            within: true,
        },
        bare("curl -u user", format!("curl -u deploy:{tok} https://{host}/v1/me\n")),
        bare("curl -u key", format!("curl https://{host}/v1/items \\\n  -u {tok}:\n")),
        Leak {
            how: "basic header",
            text: format!("GET /v1/me HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {basic}\r\n\r\n"),
            value: basic.clone(),
            also: &["secret.authorization_basic"],
            named: false,
            within: true,
        },
        l("terraform state", tf_state),
        l("shell single-quoted env", format!("docker run --rm -e '{var}={tok}' acme/app:latest\n")),
        l("shell single-quoted header", format!("curl -s -H 'Authorization: Bearer {tok}' https://{host}/v1/me\n")),
        Leak {
            how: "base64 wrapped at 76",
            text: format!("$ printf %s \"${var}\" | base64\n{wrapped}\n$ \n"),
            value: wrapped.clone(),
            also: &[],
            named: false,
            within: false,
        },
        l("yaml block scalar", format!("app:\n  env_file: |\n    DEBUG=true\n    {var}={tok}\n  replicas: 2\n")),
        l("yaml block scalar value", format!("secrets:\n  {low}: |\n    {tok}\n  region: eu\n")),
        l("shell prompt", format!("dev@box:~/app$ export {var}={tok}\n")),
        l("windows prompt", format!("C:\\Users\\dev\\app>set {var}={tok}\n")),
        l("dotenv crlf", format!("DEBUG=true\r\n{var}={tok}\r\nPORT=8080\r\n")),
        l("systemd unit", format!("[Service]\nEnvironment=\"{var}={tok}\"\nExecStart=/usr/bin/app\n")),
        l("kubectl from-literal", format!("kubectl create secret generic app --from-literal={var}={tok} -n prod\n")),
        l("fish set", format!("set -gx {var} {tok}\n")),
        l("docker run -e", format!("docker run -e {var}={tok} -p 8080:8080 acme/app\n")),
        l("json escaped twice", twice),
        l("csv", format!("name,value,updated\n{var},{tok},2025-03-04\n")),
        l("dotnet user secrets", format!("{{\n  \"{service}:ApiKey\": \"{tok}\"\n}}\n")),
        l("curl verbose", format!("> GET /v1/models HTTP/2\n> Host: {host}\n> Authorization: Bearer {tok}\n> User-Agent: curl/8.5.0\n")),
        l("gradle buildConfigField", format!("buildConfigField(\"String\", \"{var}\", \"\\\"{tok}\\\"\")\n")),
        l("sql insert", format!("INSERT INTO settings (name, value) VALUES ('{var}', '{tok}');\n")),
        l("helm --set", format!("helm upgrade app ./chart --set env.{var}={tok} --namespace prod\n")),
        l("go struct", format!("\tcfg := {service}Config{{\n\t\tAPIKey: \"{tok}\",\n\t}}\n")),
        l("yaml camel", format!("{service}:\n  apiKey: {tok}\n")),
        l("cli flag", format!("acme deploy --prod --{kebab} {tok} --region eu\n")),
        l("cli flag equals", format!("acme deploy --{kebab}={tok} --yes\n")),
        l("plist", format!("<dict>\n\t<key>{pascal}</key>\n\t<string>{tok}</string>\n</dict>\n")),
        l("android strings", format!("<resources>\n    <string name=\"{low}\">{tok}</string>\n</resources>\n")),
        l("yaml flow mapping", format!("credentials: {{ {low}: {tok}, region: eu }}\n")),
        l("html entities", format!("<pre>{{&quot;{low}&quot;: &quot;{tok}&quot;}}</pre>\n")),
        bare("requests auth tuple", format!("r = requests.get(url, auth=(\"deploy\", \"{tok}\"))\n")),
        bare("go basic auth", format!("\treq.SetBasicAuth(\"deploy\", \"{tok}\")\n")),
        bare("reqwest bearer", format!("    .bearer_auth(\"{tok}\")\n")),
        bare("docker login", format!("docker login -u deploy -p {tok} registry.acme.test\n")),
        l("env prose", format!("I set {var} to {tok} but every call still fails with 401, any idea?\n")),
    ]
}

/// Multi-part credentials: files whose shape is the format (key pairs, service-account JSON,
/// connection strings, private keys, database URIs).
fn documents(rng: &mut Rng) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut doc = |what: &str, text: String, parts: Vec<(&'static str, String)>| {
        let expect = parts
            .iter()
            .map(|(d, v)| (vec![*d], span_of(&text, v)))
            .collect();
        out.push(Sample {
            what: what.to_string(),
            text,
            expect,
            within: false,
        });
    };

    let akid = format!("AKIA{}", rng.string(UPPER_B32, 16));
    let secret = rng.string(B64, 40);
    doc(
        "aws credentials file",
        format!("[default]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\nregion = us-east-1\n"),
        vec![("secret.aws_access_key_id", akid.clone()), ("secret.aws_secret_access_key", secret.clone())],
    );
    let akid = format!("AKIA{}", rng.string(UPPER_B32, 16));
    let secret = rng.string(B64, 40);
    doc(
        "aws env exports",
        format!("export AWS_ACCESS_KEY_ID={akid}\nexport AWS_SECRET_ACCESS_KEY={secret}\n"),
        vec![
            ("secret.aws_access_key_id", akid.clone()),
            ("secret.aws_secret_access_key", secret.clone()),
        ],
    );
    let akid = format!("AKIA{}", rng.string(UPPER_B32, 16));
    let secret = rng.string(B64, 40);
    doc(
        "aws boto3 args",
        format!("s3 = boto3.client(\n    \"s3\",\n    aws_access_key_id=\"{akid}\",\n    aws_secret_access_key=\"{secret}\",\n)\n"),
        vec![("secret.aws_access_key_id", akid.clone()), ("secret.aws_secret_access_key", secret.clone())],
    );
    let akid = format!("ASIA{}", rng.string(UPPER_B32, 16));
    let secret = rng.string(B64, 40);
    let session = format!("IQoJb3JpZ2luX2VjE{}", rng.string(B64, 380));
    doc(
        "aws sts session json",
        format!("{{\n    \"Credentials\": {{\n        \"AccessKeyId\": \"{akid}\",\n        \"SecretAccessKey\": \"{secret}\",\n        \"SessionToken\": \"{session}\",\n        \"Expiration\": \"2025-06-01T12:00:00Z\"\n    }}\n}}\n"),
        vec![
            ("secret.aws_access_key_id", akid.clone()),
            ("secret.aws_secret_access_key", secret.clone()),
            ("secret.aws_session_token", session.clone()),
        ],
    );

    let access_id = format!("GOOG1{}", rng.string(UPPER_B32, 56));
    let secret = rng.string(B64, 40);
    doc(
        "gcs hmac .boto",
        format!("[Credentials]\ngs_access_key_id = {access_id}\ngs_secret_access_key = {secret}\n\n[Boto]\nhttps_validate_certificates = True\n"),
        vec![("secret.gcp_hmac_access_id", access_id.clone()), ("secret.gcp_hmac_secret", secret.clone())],
    );
    let access_id = format!("GOOG1{}", rng.string(UPPER_B32, 56));
    let secret = rng.string(B64, 40);
    doc(
        "gcs hmac create output",
        format!("$ gcloud storage hmac create deployer@acme-prod.iam.gserviceaccount.com\nAccess ID:   {access_id}\nSecret:      {secret}\n"),
        vec![("secret.gcp_hmac_access_id", access_id.clone()), ("secret.gcp_hmac_secret", secret.clone())],
    );

    let key_id = rng.hex(40);
    let pem_body: String = (0..25)
        .map(|_| rng.string(B64, 64))
        .collect::<Vec<_>>()
        .join("\\n");
    let pk = format!("-----BEGIN PRIVATE KEY-----\\n{pem_body}\\n-----END PRIVATE KEY-----");
    doc(
        "gcp service account json",
        format!("{{\n  \"type\": \"service_account\",\n  \"project_id\": \"acme-prod\",\n  \"private_key_id\": \"{key_id}\",\n  \"private_key\": \"{pk}\\n\",\n  \"client_email\": \"deployer@acme-prod.iam.gserviceaccount.com\",\n  \"client_id\": \"{}\"\n}}\n", rng.string(DIGITS, 21)),
        vec![("secret.gcp_service_account_key", key_id.clone()), ("secret.private_key_pkcs8", pk.clone())],
    );

    let account_key = format!("{}==", rng.string(B64, 86));
    doc(
        "azure storage connection string",
        format!("AZURE_STORAGE_CONNECTION_STRING=\"DefaultEndpointsProtocol=https;AccountName=acmedata;AccountKey={account_key};EndpointSuffix=core.windows.net\"\n"),
        vec![("secret.azure_storage_account_key", account_key.clone())],
    );
    let account_key = format!("{}==", rng.string(B64, 86));
    doc(
        "azure storage appsettings json",
        format!("{{\n  \"ConnectionStrings\": {{\n    \"Storage\": \"DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey={account_key};EndpointSuffix=core.windows.net\"\n  }}\n}}\n"),
        vec![("secret.azure_storage_account_key", account_key.clone())],
    );

    for (label, detector, begin) in [
        ("rsa pem", "secret.private_key_rsa", "RSA PRIVATE KEY"),
        ("ec pem", "secret.private_key_ec", "EC PRIVATE KEY"),
        (
            "openssh key",
            "secret.private_key_openssh",
            "OPENSSH PRIVATE KEY",
        ),
    ] {
        let lines: Vec<String> = (0..12).map(|_| rng.string(B64, 64)).collect();
        let key = format!(
            "-----BEGIN {begin}-----\n{}\n-----END {begin}-----",
            lines.join("\n")
        );
        doc(
            label,
            format!("$ cat ~/.ssh/id\n{key}\n"),
            vec![(detector, key.clone())],
        );
    }

    let pw = format!("{}{}", rng.alnum(14), "!x9");
    doc(
        "postgres uri",
        format!("DATABASE_URL=postgresql://app_user:{pw}@db.internal:5432/app\n"),
        vec![("secret.postgres_uri_password", pw.clone())],
    );
    let pw = rng.alnum(18);
    doc(
        "mysql uri in python",
        format!("engine = create_engine(\"mysql+pymysql://root:{pw}@127.0.0.1:3306/shop\")\n"),
        vec![("secret.mysql_uri_password", pw.clone())],
    );
    let pw = rng.alnum(16);
    doc(
        "mongodb srv uri",
        format!(
            "MONGO_URI=mongodb+srv://admin:{pw}@cluster0.ab1cd.mongodb.net/?retryWrites=true\n"
        ),
        vec![("secret.mongodb_uri_password", pw.clone())],
    );
    let pw = rng.alnum(24);
    doc(
        "redis uri",
        format!("REDIS_URL=rediss://default:{pw}@cache.internal:6380/0\n"),
        vec![("secret.redis_uri_password", pw.clone())],
    );

    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64url(
        format!(
            "{{\"sub\":\"{}\",\"name\":\"svc\",\"iat\":{}}}",
            rng.string(DIGITS, 10),
            1_700_000_000 + rng.below(1_000_000)
        )
        .as_bytes(),
    );
    let jwt = format!("{header}.{payload}.{}", rng.string(URLSAFE, 43));
    doc(
        "jwt in header",
        format!("curl https://internal.api/v1/me -H \"Authorization: Bearer {jwt}\"\n"),
        vec![("secret.jwt", jwt.clone())],
    );

    let hook = format!(
        "https://hooks.slack.com/services/T{}/B{}/{}",
        rng.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
        rng.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
        rng.alnum(24)
    );
    doc(
        "slack webhook in yaml",
        format!("alerts:\n  slack_webhook_url: {hook}\n"),
        vec![("secret.slack_webhook", hook.clone())],
    );
    let hook = format!(
        "https://discord.com/api/webhooks/{}/{}",
        rng.string(DIGITS, 19),
        rng.string(URLSAFE, 68)
    );
    doc(
        "discord webhook in python",
        format!("requests.post(\"{hook}\", json={{\"content\": msg}})\n"),
        vec![("secret.discord_webhook", hook.clone())],
    );
    let sig = format!("{}%3D", rng.string(ALNUM, 43));
    doc(
        "azure sas url",
        format!("BLOB_URL=https://acme.blob.core.windows.net/backups/db.bak?sv=2022-11-02&ss=b&srt=o&sp=r&se=2026-01-01T00:00:00Z&spr=https&sig={sig}\n"),
        vec![("secret.azure_sas_token", sig.clone())],
    );
    let npm = checksummed_token(rng, "npm_", true);
    doc(
        ".npmrc",
        format!("registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken={npm}\n"),
        vec![("secret.npm_token", npm.clone())],
    );
    let ghp = checksummed_token(rng, "ghp_", true);
    doc(
        "git credentials",
        format!("https://octocat:{ghp}@github.com\n"),
        vec![("secret.github_pat_classic", ghp.clone())],
    );
    let sak = format!("{}=", rng.string(B64, 43));
    doc(
        "service bus connection string",
        format!("\"ServiceBus\": \"Endpoint=sb://acme-bus.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={sak}\"\n"),
        vec![("secret.azure_shared_access_key", sak.clone())],
    );
    let pw = format!("{}!{}", rng.alnum(10), rng.string(DIGITS, 2));
    doc(
        "jdbc url",
        format!(
            "spring.datasource.url=jdbc:postgresql://db.internal:5432/app?user=app&password={pw}\n"
        ),
        vec![("secret.jdbc_password", pw.clone())],
    );
    let pw = format!("{}*{}", rng.alnum(8), rng.alnum(6));
    doc(
        "ado.net connection string",
        format!("\"DefaultConnection\": \"Server=tcp:acme.database.windows.net,1433;Database=app;User ID=app;Password={pw};Encrypt=True;\"\n"),
        vec![("secret.ado_connection_string_password", pw.clone())],
    );
    let pw = format!("{}^{}", rng.alnum(9), rng.alnum(5));
    doc(
        "spring properties",
        format!("spring.datasource.username=app\nspring.datasource.password={pw}\n"),
        vec![("secret.generic_password_unquoted", pw.clone())],
    );
    let pypi = {
        let mut body = vec![0x02, 0x01, 0x08];
        body.extend_from_slice(b"pypi.org");
        body.extend((0..140).map(|_| rng.next() as u8));
        format!("pypi-{}", b64url(&body))
    };
    doc(
        ".pypirc",
        format!("[pypi]\n  username = __token__\n  password = {pypi}\n"),
        vec![("secret.pypi_token", pypi.clone())],
    );
    let lines: Vec<String> = (0..12).map(|_| rng.string(B64, 64)).collect();
    let key = format!(
        "-----BEGIN RSA PRIVATE KEY-----\\n{}\\n-----END RSA PRIVATE KEY-----",
        lines.join("\\n")
    );
    doc(
        "rsa key in agent json",
        format!("{{\"role\":\"user\",\"content\":\"deploy fails, key is:\\n{key}\\n\"}}"),
        vec![("secret.private_key_rsa", key.clone())],
    );
    let auth = b64(format!("deploy:{}", rng.alnum(24)).as_bytes());
    doc(
        "docker config.json",
        format!("{{\n  \"auths\": {{\n    \"registry.acme.io\": {{\n      \"auth\": \"{auth}\"\n    }}\n  }}\n}}\n"),
        vec![("secret.docker_config_auth", auth.clone())],
    );
    out
}

/// Strings that look like secrets and are not: none may be reported.
fn look_alikes(rng: &mut Rng) -> Vec<(&'static str, String)> {
    let uuid = |r: &mut Rng| {
        format!(
            "{}-{}-4{}-{}{}-{}",
            r.hex(8),
            r.hex(4),
            r.hex(3),
            ["8", "9", "a", "b"][r.below(4)],
            r.hex(3),
            r.hex(12)
        )
    };
    let text_b64 =
        b64(b"The quarterly report is attached; please review the figures before Friday.");
    let bad_jwt = format!(
        "eyJ{}.eyJ{}.{}",
        rng.string(URLSAFE, 30),
        rng.string(URLSAFE, 40),
        rng.string(URLSAFE, 43)
    );
    let crockford = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    vec![
        (
            "uuid",
            format!("{{\"id\": \"{}\", \"name\": \"alpha\"}}\n", uuid(rng)),
        ),
        (
            "uuid request id",
            format!("request_id={} status=200\n", uuid(rng)),
        ),
        (
            "git sha",
            format!("commit {}\nAuthor: CI Bot <ci>\n", rng.hex(40)),
        ),
        (
            "git sha in lock",
            format!(
                "\"resolved\": \"git+https://github.com/acme/lib.git#{}\"\n",
                rng.hex(40)
            ),
        ),
        ("short sha", format!("Merge {} into main\n", rng.hex(7))),
        (
            "npm integrity",
            format!("\"integrity\": \"sha512-{}==\"\n", rng.string(B64, 86)),
        ),
        ("yarn checksum", format!("  checksum: {}\n", rng.hex(128))),
        (
            "cargo lock checksum",
            format!("checksum = \"{}\"\n", rng.hex(64)),
        ),
        (
            "go.sum",
            format!("golang.org/x/net v0.25.0 h1:{}=\n", rng.string(B64, 43)),
        ),
        (
            "pip hash",
            format!("requests==2.32.3 --hash=sha256:{}\n", rng.hex(64)),
        ),
        (
            "docker digest",
            format!("image: ghcr.io/acme/api@sha256:{}\n", rng.hex(64)),
        ),
        (
            "sha256sum line",
            format!("{}  release.tar.gz\n", rng.hex(64)),
        ),
        ("base64 text", format!("\"body\": \"{text_b64}\"\n")),
        (
            "css colours",
            format!(
                ".btn {{ color: #{}; background: #{}; }}\n",
                rng.hex(6),
                rng.hex(3)
            ),
        ),
        (
            "minified js",
            "var a=function(e,t){return e.apiKeyField||t.tokenRef},b=a(n,r);\n".to_string(),
        ),
        (
            "i18n keys",
            "t(\"settings.api_key.label\"); t(\"auth.token_expired\");\n".to_string(),
        ),
        (
            "i18n json",
            "{\"api_key_hint\": \"Paste your API key here\", \"token_label\": \"Access token\"}\n"
                .to_string(),
        ),
        (
            "openai placeholder",
            "OPENAI_API_KEY=sk-...xxxx\n".to_string(),
        ),
        (
            "openai placeholder 2",
            "client = OpenAI(api_key=\"sk-your-key-here\")\n".to_string(),
        ),
        (
            "aws docs example",
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n".to_string(),
        ),
        (
            "your-api-key",
            "export ANTHROPIC_API_KEY=your-api-key\n".to_string(),
        ),
        (
            "env reference",
            "api_key = os.environ[\"OPENAI_API_KEY\"]\n".to_string(),
        ),
        (
            "template",
            "token: ${{ secrets.GITHUB_TOKEN }}\n".to_string(),
        ),
        (
            "angle placeholder",
            "-H \"Authorization: Bearer <YOUR_TOKEN>\"\n".to_string(),
        ),
        (
            "low entropy",
            "api_key = \"aaaabbbbaaaabbbbaaaabbbb\"\n".to_string(),
        ),
        (
            "broken ghp",
            format!("token = \"{}\"\n", checksummed_token(rng, "ghp_", false)),
        ),
        (
            "broken npm",
            format!(
                "//registry.npmjs.org/:_authToken={}\n",
                checksummed_token(rng, "npm_", false)
            ),
        ),
        (
            "versions",
            "\"dependencies\": {\"react\": \"^18.3.1\", \"typescript\": \"5.4.5\"}\n".to_string(),
        ),
        (
            "ulid",
            format!("\"event_id\": \"01{}\"\n", rng.string(crockford, 24)),
        ),
        ("ksuid", format!("ksuid: 2{}\n", rng.alnum(26))),
        ("jwt bad header", format!("jwt = \"{bad_jwt}\"\n")),
        (
            "timestamp ms",
            format!(
                "\"created\": {}\n",
                1_700_000_000_000u64 + rng.next() % 1_000_000_000
            ),
        ),
        ("hex colour var", "--primary-600: #1d4ed8;\n".to_string()),
        (
            "function names",
            "def get_api_key_from_vault(secret_name): return fetch_secret_value(secret_name)\n"
                .to_string(),
        ),
        (
            "token count",
            "\"usage\": {\"input_tokens\": 1024, \"output_tokens\": 256}\n".to_string(),
        ),
        // Credential-shaped contexts holding something that is not a credential.
        ("env default", "api_key = os.environ.get(\"ACME_API_KEY\", \"default_api_key_value\")\n".to_string()),
        ("setdefault path", "os.environ.setdefault(\"TOKEN_CACHE_DIR\", \"/var/cache/acme/tokens\")\n".to_string()),
        ("header from var", "headers = {\"X-Api-Key\": api_key, \"Accept\": \"application/json\"}\n".to_string()),
        ("header template", "curl -H \"X-Api-Key: {{apiKey}}\" https://api.acme.test/v1/items\n".to_string()),
        ("header from shell", "curl -H \"x-api-key: $(cat ~/.acme/key)\" https://api.acme.test\n".to_string()),
        ("query placeholder", "GET https://api.acme.test/v1/items?api_key=YOUR_API_KEY&page=2\n".to_string()),
        ("query cache key", "https://cdn.acme.test/img?key=user_profile_avatar_large&w=64\n".to_string()),
        ("dockerfile arg", "ARG GITHUB_TOKEN\nENV NODE_VERSION 20.11.1\nENV TOKEN_EXPIRY 3600\n".to_string()),
        ("k8s secret ref", "env:\n  - name: ACME_API_KEY\n    valueFrom:\n      secretKeyRef:\n        name: acme\n        key: api-key\n".to_string()),
        ("k8s header name", "env:\n  - name: SESSION_TOKEN_HEADER\n    value: X-Session-Token\n".to_string()),
        ("terraform ssm path", "variable \"api_key_ssm_path\" {\n  default = \"/prod/acme/api_key\"\n}\n".to_string()),
        ("terraform no default", "variable \"db_password\" {\n  type      = string\n  sensitive = true\n}\n".to_string()),
        ("csp hash", format!("Content-Security-Policy: script-src 'self' 'sha256-{}='\n", rng.string(B64, 43))),
        ("sri", format!("<script src=\"app.js\" integrity=\"sha384-{}\"></script>\n", rng.string(B64, 64))),
        ("webpack chunk", format!("<script src=\"/static/js/main.{}.chunk.js\"></script>\n", rng.hex(8))),
        ("etag", format!("ETag: \"{}\"\n", rng.hex(32))),
        ("k8s uid", format!("metadata:\n  uid: {}\n  resourceVersion: \"{}\"\n", uuid(rng), rng.string(DIGITS, 8))),
        ("stripe publishable", format!("const stripe = Stripe(\"pk_live_51{}\");\n", rng.alnum(97))),
        ("sentry dsn", format!("SENTRY_DSN=https://{}@o{}.ingest.sentry.io/{}\n", rng.hex(32), rng.string(DIGITS, 6), rng.string(DIGITS, 7))),
        ("data uri", format!("background: url(data:image/png;base64,{});\n", b64(&(0..48).map(|_| rng.next() as u8).collect::<Vec<u8>>()))),
        ("aws arn", "role_arn = \"arn:aws:iam::123456789012:role/deploy-token-refresher\"\n".to_string()),
        ("mixed-case identifier", "const tokenRefreshHandlerName = \"handleTokenRefreshRequest\";\n".to_string()),
        // Session 8: flags, auth calls, app config files, tables, prompts that hold no secret.
        ("cli flag from env", "acme deploy --api-key \"$ACME_API_KEY\" --region eu-west-1\n".to_string()),
        ("openssl key file", "openssl req -new -key /etc/ssl/private/server-2025.key -out server.csr\n".to_string()),
        ("cli sort key", "kubectl get pods --sort-key .metadata.creationTimestamp -o wide\n".to_string()),
        ("auth tuple from vars", "r = requests.get(url, auth=(settings.api_user, settings.api_password))\n".to_string()),
        ("plist bundle id", "<key>CFBundleIdentifier</key>\n<string>com.acme.tokenwallet2</string>\n".to_string()),
        ("android string label", "<string name=\"api_key_label\">Your API key</string>\n".to_string()),
        ("markdown table of names", "| Variable | Description |\n|---|---|\n| `ACME_API_KEY` | The key from the dashboard |\n".to_string()),
        ("prompt without secret", "dev@box:~/app$ export ACME_API_KEY=$(cat ~/.acme/key)\n".to_string()),
        ("diff of a reference", "-ACME_API_KEY=\n+ACME_API_KEY=${ACME_API_KEY}\n".to_string()),
        ("csv of names", "name,description,required\nACME_API_KEY,the key from the dashboard,yes\n".to_string()),
        ("curl user from env", "curl -u \"$CI_USER:$CI_TOKEN\" https://ci.acme.test/api/json\n".to_string()),
        ("gcs access id short", "gcloud storage hmac describe GOOG1ABCDEFGHIJKLMNOP\n".to_string()),
    ]
}

/// Secrets of services no rule names (an in-house API, a payment gateway, a database): only
/// the generic rules can see them, from the name they are given.
fn unnamed_services() -> Vec<Provider> {
    let generic = |var: &'static str, make: fn(&mut Rng) -> String| Provider {
        detector: "secret.generic_api_key_quoted",
        var,
        ctor: "AcmeClient",
        host: "api.acme-payments.test",
        make,
        contextual: true,
    };
    vec![
        generic("ACME_API_KEY", |r| r.alnum(32)),
        generic("PAYMENT_GATEWAY_SECRET", |r| r.hex(40)),
        generic("PARTNER_ACCESS_TOKEN", |r| r.string(URLSAFE, 48)),
        generic("INTERNAL_API_TOKEN", |r| format!("itk_{}", r.alnum(36))),
        generic("JWT_SECRET", |r| r.string(B64, 44)),
        generic("WEBHOOK_SIGNING_SECRET", |r| r.alnum(40)),
        generic("ENCRYPTION_KEY", |r| r.hex(64)),
        generic("SERVICE_CLIENT_SECRET", |r| r.string(URLSAFE, 36)),
        // Passwords people choose: mixed case, digits, a few symbols.
        generic("DB_PASSWORD", |r| format!("{}^{}!", r.alnum(9), r.alnum(4))),
        generic("SMTP_PASSWORD", |r| {
            format!("{}%{}", r.alnum(7), r.alnum(8))
        }),
        generic("REDIS_PASSWORD", |r| {
            r.string(
                b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!*-",
                20,
            )
        }),
    ]
}

/// Every provider (and unnamed service) leaked in the contexts of [`more_leaks`].
fn session8_samples(rng: &mut Rng) -> Vec<Sample> {
    let mut samples = Vec::new();
    for p in providers().into_iter().chain(unnamed_services()) {
        let tok = (p.make)(rng);
        let generic_only = p.detector == "secret.generic_api_key_quoted";
        let password = p.var.ends_with("PASSWORD");
        if password && tok.starts_with(['%', ':', '[', '(', '!', '&', '|', '>']) {
            // The password rules leave a value that opens like a YAML tag, anchor or block
            // (`!vault`, `&default`, `|`) alone, by design.
            continue;
        }
        for leak in more_leaks(&p, &tok) {
            if generic_only && !leak.named {
                // Nothing says what an unnamed service's value is: no rule can know.
                continue;
            }
            if password
                && matches!(
                    leak.how,
                    "log headers repr"
                        | "shell single-quoted header"
                        | "curl verbose"
                        | "curl -u key"
                        | "diff code"
                        | "dotnet user secrets"
                        | "toml table"
                        | "go struct"
                        | "yaml camel"
                )
            {
                // A database password is not sent as a bearer token or named an API key.
                continue;
            }
            if p.contextual && leak.how == "docker login" {
                // A registry password, not a model provider's API key.
                continue;
            }
            if leak.how == "base64 wrapped at 76" && (leak.value.len() < 32 || p.contextual) {
                // Too short for the base64 pass (see the Kubernetes case), or a token only its
                // provider's name makes one, which a bare base64 line does not hold.
                continue;
            }
            let mut detectors = vec![p.detector];
            if p.contextual {
                detectors.extend_from_slice(GENERIC);
            }
            detectors.extend_from_slice(leak.also);
            let limit = ENGINE_LIMITS.contains(&leak.how)
                && (leak.how != "base64 wrapped at 76" || leak.value.contains('\n'))
                && (!LIMITS_FOR_CONTEXT_ONLY.contains(&leak.how) || p.contextual);
            samples.push(Sample {
                what: format!(
                    "{} / {} {}",
                    p.detector,
                    if limit { "s8-limit" } else { "s8" },
                    leak.how
                ),
                expect: vec![(detectors, span_of(&leak.text, &leak.value))],
                text: leak.text,
                within: leak.within,
            });
        }
    }
    samples
}

fn build_samples(seed: u64) -> (Vec<Sample>, usize) {
    let mut rng = Rng(seed);
    let mut samples = Vec::new();
    for p in providers().into_iter().chain(unnamed_services()) {
        let tok = (p.make)(&mut rng);
        for (how, text, encoded) in leaks(&p, &tok) {
            if p.var.ends_with("PASSWORD")
                && matches!(
                    how,
                    "curl bearer" | "curl x-api-key" | "url query" | "python ctor" | "js ctor"
                )
            {
                // Nobody sends a database password as an API key.
                continue;
            }
            if encoded.as_ref().is_some_and(|e| e.len() < 32) {
                // The scanner decodes base64 runs of 32+ characters: a 20-character key id
                // (AWS) encodes to 28 and is out of reach by design.
                continue;
            }
            let mut value = encoded.unwrap_or_else(|| tok.clone());
            if how == "url query" && p.detector != "secret.generic_api_key_quoted" {
                // A provider rule reads its own alphabet: a percent-escape ends the token it
                // reports (Atlassian's `=` travels as `%3D`).
                value.truncate(value.find('%').unwrap_or(value.len()));
            }
            let span = span_of(&text, &value);
            let mut detectors = vec![p.detector];
            if p.contextual {
                detectors.extend_from_slice(GENERIC);
            }
            samples.push(Sample {
                what: format!("{} / {how}", p.detector),
                text,
                expect: vec![(detectors, span)],
                within: false,
            });
        }
    }
    samples.extend(session8_samples(&mut rng));
    samples.extend(documents(&mut rng));
    let positives = samples.len();
    for (what, text) in look_alikes(&mut rng) {
        samples.push(Sample {
            what: format!("look-alike / {what}"),
            text,
            expect: Vec::new(),
            within: false,
        });
    }
    (samples, positives)
}

/// What went wrong with one sample, if anything.
fn judge(scanner: &Scanner, s: &Sample) -> (Vec<String>, Vec<String>) {
    let found: Vec<Finding> = scanner.scan(s.text.as_bytes());
    let covers = |f: &Finding, span: &Range<usize>| {
        f.span == *span || s.within && f.span.start <= span.start && f.span.end >= span.end
    };
    let mut missing = Vec::new();
    for (detectors, span) in &s.expect {
        if !found
            .iter()
            .any(|f| covers(f, span) && detectors.contains(&&*f.detector))
        {
            let got: Vec<String> = found
                .iter()
                .map(|f| format!("{}@{:?}", f.detector, f.span))
                .collect();
            missing.push(format!(
                "{}: {:?} at {span:?} not found (got {got:?}) in {:?}",
                s.what, detectors[0], s.text
            ));
        }
    }
    let unexpected = found
        .iter()
        .filter(|f| {
            !s.expect
                .iter()
                .any(|(d, span)| covers(f, span) && d.contains(&&*f.detector))
        })
        .map(|f| {
            format!(
                "{}: {} reported {:?}",
                s.what,
                f.detector,
                s.text.get(f.span.clone()).unwrap_or("?")
            )
        })
        .collect();
    (missing, unexpected)
}

/// The packs `build.rs` embeds, read from the source tree: the same rules as
/// `Scanner::builtin()`, and a rule edit shows here without rebuilding the library.
fn shipped_packs() -> Scanner {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/rules");
    let mut packs = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("rules directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("pack reads");
            packs.push((path.display().to_string(), text));
        }
    }
    packs.sort();
    let packs: Vec<(&str, &str)> = packs
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let scanner = Scanner::from_packs(&packs).expect("shipped rules load");
    let failures = scanner.check_rule_cases();
    assert!(
        failures.is_empty(),
        "rule cases fail:\n{}",
        failures
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    scanner
}

#[test]
fn held_out_style_leaks_are_found_at_their_offsets_and_look_alikes_are_not() {
    let scanner = shipped_packs();
    let mut total = 0;
    let mut positives_total = 0;
    let mut missing = Vec::new();
    let mut unexpected = Vec::new();
    // Session 8's contexts, and among them the engine's known limits (not asserted).
    let (mut s8, mut s8_missed) = (0, 0);
    let (mut limits, mut limits_missed) = (0, 0);
    for seed in [0x5EED_0001_u64, 0xC0FF_EE00_1234_5678, 0x0DDB_A11F_00D0] {
        let (samples, positives) = build_samples(seed);
        total += samples.len();
        positives_total += positives;
        for s in &samples {
            let (m, u) = judge(&scanner, s);
            if s.what.contains(" / s8-limit ") {
                limits += 1;
                limits_missed += usize::from(!m.is_empty());
                continue;
            }
            if s.what.contains(" / s8 ") {
                s8 += 1;
                s8_missed += usize::from(!m.is_empty());
            }
            missing.extend(m);
            unexpected.extend(u);
        }
    }
    eprintln!(
        "held-out: {} leaks ({s8} in session-8 contexts, {s8_missed} of them missed), {} look-alikes, {} missed, {} false or extra reports; engine limits (not asserted): {limits} leaks, {limits_missed} missed",
        positives_total - limits,
        total - positives_total,
        missing.len(),
        unexpected.len()
    );
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing ({}):\n{}\n\nunexpected ({}):\n{}",
        missing.len(),
        missing.join("\n"),
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        positives_total > 3 * 1500,
        "too few leaks: {positives_total}"
    );
}
