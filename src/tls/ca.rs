//! The local CA: an ECDSA P-256 root created once per data directory, constrained to a built-in
//! catalogue of AI API domains.
//!
//! The name constraints are the point: a stolen CA key can impersonate an LLM API, never a bank
//! or a code host, and a client that enforces RFC 5280 refuses any leaf outside the catalogue
//! even if we had a bug. The catalogue is deliberately wider than the hosts inspected by
//! default, so a policy that starts inspecting another AI provider needs no new CA (and no
//! re-trust on every laptop of a fleet).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
};

use super::TlsError;

/// Domains (each with all its subdomains) the CA may ever sign for.
///
/// Chosen as registrable domains whose whole namespace serves an AI API or its console, plus,
/// for the clouds, only the exact API hosts: `googleapis.com` or `amazonaws.com` as a whole would
/// let a stolen key impersonate storage, mail or identity services, so Vertex AI and Bedrock are
/// listed per region instead. A region missing here can be added in a release (with a new CA);
/// it is rare, unlike policy changes, which never need one.
pub const INTERCEPTABLE_DOMAINS: &[&str] = &[
    // Anthropic
    "anthropic.com",
    "claude.ai",
    // OpenAI (ChatGPT sign-in for Codex CLI talks to chatgpt.com)
    "openai.com",
    "chatgpt.com",
    "openai.azure.com",
    "cognitiveservices.azure.com",
    "services.ai.azure.com",
    // Google Gemini / Vertex AI
    "generativelanguage.googleapis.com",
    "aiplatform.googleapis.com",
    "us-central1-aiplatform.googleapis.com",
    "us-east1-aiplatform.googleapis.com",
    "us-east4-aiplatform.googleapis.com",
    "us-east5-aiplatform.googleapis.com",
    "us-west1-aiplatform.googleapis.com",
    "us-west4-aiplatform.googleapis.com",
    "europe-west1-aiplatform.googleapis.com",
    "europe-west3-aiplatform.googleapis.com",
    "europe-west4-aiplatform.googleapis.com",
    "europe-west9-aiplatform.googleapis.com",
    "asia-northeast1-aiplatform.googleapis.com",
    "asia-southeast1-aiplatform.googleapis.com",
    // AWS Bedrock runtime, per region
    "bedrock-runtime.us-east-1.amazonaws.com",
    "bedrock-runtime.us-east-2.amazonaws.com",
    "bedrock-runtime.us-west-2.amazonaws.com",
    "bedrock-runtime.eu-central-1.amazonaws.com",
    "bedrock-runtime.eu-west-1.amazonaws.com",
    "bedrock-runtime.eu-west-3.amazonaws.com",
    "bedrock-runtime.ap-northeast-1.amazonaws.com",
    "bedrock-runtime.ap-southeast-2.amazonaws.com",
    // Other model APIs an agent may be pointed at
    "mistral.ai",
    "cohere.com",
    "cohere.ai",
    "groq.com",
    "x.ai",
    "deepseek.com",
    "openrouter.ai",
    "together.xyz",
    "fireworks.ai",
    "perplexity.ai",
];

/// Whether the CA may sign for `host`: it equals a catalogue domain or is a subdomain of one.
pub fn is_interceptable(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    INTERCEPTABLE_DOMAINS.iter().any(|domain| {
        host == *domain
            || host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
    })
}

const CERT_FILE: &str = "ca.pem";
const KEY_FILE: &str = "ca-key.pem";
const COMMON_NAME: &str = "egress-guard local CA";

/// The CA loaded in memory: the certificate (as issuer) and its key.
pub struct LocalCa {
    pub(super) issuer: Certificate,
    pub(super) key: KeyPair,
    cert_pem: String,
    cert_path: PathBuf,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Where the CA certificate of `data_dir` lives (whether or not it exists yet).
    pub fn cert_path(data_dir: &Path) -> PathBuf {
        data_dir.join(CERT_FILE)
    }

    /// Loads the CA of `data_dir`, creating it first if there is none. Idempotent, and safe
    /// when two processes start at once (`exec --start` in two terminals): the key file is
    /// created exclusively, so one of them creates the CA and the other waits for it.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, TlsError> {
        let key_path = data_dir.join(KEY_FILE);
        for _ in 0..2 {
            if Self::cert_path(data_dir).exists() {
                return Self::load(data_dir);
            }
            match Self::create(data_dir) {
                Err(TlsError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    // Another process is writing the CA right now, or one crashed between
                    // writing the key and the certificate. Wait (bounded) for the certificate;
                    // a key still alone after that certifies nothing and is replaced.
                    for _ in 0..100 {
                        if Self::cert_path(data_dir).exists() {
                            return Self::load(data_dir);
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    fs::remove_file(&key_path).map_err(|source| TlsError::Io {
                        path: key_path.clone(),
                        source,
                    })?;
                }
                other => return other,
            }
        }
        Self::load(data_dir)
    }

    /// Loads an existing CA; `NoCa` if there is none.
    pub fn load(data_dir: &Path) -> Result<Self, TlsError> {
        let cert_path = Self::cert_path(data_dir);
        let key_path = data_dir.join(KEY_FILE);
        if !cert_path.exists() {
            return Err(TlsError::NoCa {
                dir: data_dir.to_path_buf(),
            });
        }
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::BadCa {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let bad_cert = |e: rcgen::Error| TlsError::BadCa {
            path: cert_path.clone(),
            reason: e.to_string(),
        };
        // Re-signing the parsed parameters gives an issuer with the same name and key, which is
        // all a leaf's issuer and authority key id depend on; the certificate on disk stays the
        // one clients trust.
        let params = CertificateParams::from_ca_cert_pem(&cert_pem).map_err(bad_cert)?;
        let issuer = params.self_signed(&key).map_err(bad_cert)?;
        Ok(Self {
            issuer,
            key,
            cert_pem,
            cert_path,
        })
    }

    fn create(data_dir: &Path) -> Result<Self, TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let cert_path = Self::cert_path(data_dir);
        let key_path = data_dir.join(KEY_FILE);
        let mint_error = |e: rcgen::Error| TlsError::Mint {
            host: COMMON_NAME.to_string(),
            reason: e.to_string(),
        };

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(mint_error)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, COMMON_NAME);
        name.push(DnType::OrganizationName, "egress-guard");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: INTERCEPTABLE_DOMAINS
                .iter()
                .map(|d| GeneralSubtree::DnsName(d.to_string()))
                .collect(),
            // No IP address may ever be certified: intercepted hosts are always named.
            excluded_subtrees: vec![
                GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
                GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
            ],
        });
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let issuer = params.self_signed(&key).map_err(mint_error)?;
        let cert_pem = issuer.pem();

        // The key first, created 0600 from the start so it is never readable by others, not
        // even for an instant; the certificate last, because its presence means "CA exists".
        write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
        // Written under another name and renamed, so a reader never sees half a certificate.
        let partial = data_dir.join(format!("{CERT_FILE}.partial"));
        fs::write(&partial, &cert_pem).map_err(io(&partial))?;
        fs::rename(&partial, &cert_path).map_err(io(&cert_path))?;
        Ok(Self {
            issuer,
            key,
            cert_pem,
            cert_path,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        self.issuer.der()
    }

    pub fn path(&self) -> &Path {
        &self.cert_path
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_left_alone_by_a_crash_is_replaced() {
        let dir = std::env::temp_dir().join(format!("eg-ca-{}", uuid::Uuid::now_v7()));
        fs::create_dir_all(&dir).expect("dir");
        fs::write(dir.join(KEY_FILE), "stale").expect("orphan key");
        let ca = LocalCa::load_or_create(&dir).expect("CA despite the orphan key");
        let again = LocalCa::load_or_create(&dir).expect("loads");
        assert_eq!(ca.cert_pem(), again.cert_pem());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn catalogue_matches_domains_and_subdomains_only() {
        assert!(is_interceptable("api.anthropic.com"));
        assert!(is_interceptable("API.OpenAI.com."));
        assert!(is_interceptable("generativelanguage.googleapis.com"));
        assert!(is_interceptable("bedrock-runtime.us-east-1.amazonaws.com"));
        assert!(!is_interceptable("evilanthropic.com"));
        assert!(!is_interceptable("storage.googleapis.com"));
        assert!(!is_interceptable("s3.amazonaws.com"));
        assert!(!is_interceptable("www.mybank.example"));
        assert!(!is_interceptable("tunnel.example.test"));
        assert!(!is_interceptable(".anthropic.com"));
    }
}
