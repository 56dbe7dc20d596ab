//! `egress-guard run`: flags + config file -> `ProxyConfig`, then serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;

use egress_guard::proxy::gate::Gate;
use egress_guard::proxy::{Drained, Proxy, ProxyConfig};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML config file with the same settings as these flags (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Proxy listener (forward proxy and base-URL mode) [default: 127.0.0.1:8877].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listener: /metrics, /healthz, /readyz, /proxy.pac, /ca.pem [default: 127.0.0.1:8878].
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Policy directory (default: the shipped policy embedded in the binary).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Where the CA, audit log and state live [default: the platform data dir].
    #[arg(long, env = "EGRESS_GUARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Extra trusted root for upstream TLS (repeatable); system and webpki roots stay trusted.
    #[arg(long = "upstream-ca")]
    pub upstream_ca: Vec<PathBuf>,
    /// HOST:PORT=ADDR:PORT: connect to ADDR:PORT whenever HOST:PORT is the upstream (repeatable).
    #[arg(long)]
    pub resolve: Vec<String>,
    /// Largest request body inspected, e.g. 32MiB, 512KiB or bytes; bigger ones are refused
    /// with 413 [default: 32MiB].
    #[arg(long, value_parser = parse_size)]
    pub max_body: Option<usize>,
    /// Also intercept HOST (repeatable), on top of the default AI API hosts. Only hosts inside
    /// the CA's built-in catalogue can be intercepted; others are refused with a clear error.
    #[arg(long = "inspect", value_name = "HOST")]
    pub inspect: Vec<String>,
    /// Refuse (403) connections to hosts that are not inspected, instead of tunnelling them.
    #[arg(long)]
    pub refuse_others: bool,
    /// Seconds to wait for an upstream TCP connection [default: 10].
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<u64>,
    /// Seconds to wait for an upstream's response head; a streamed body may then take as long as
    /// it needs [default: 600].
    #[arg(long, value_name = "SECS")]
    pub response_timeout: Option<u64>,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM [default: 30].
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u64>,
}

/// The config file: the same keys as the flags (kebab-case; snake_case accepted too).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    policy: Option<PathBuf>,
    #[serde(alias = "data_dir")]
    data_dir: Option<PathBuf>,
    #[serde(default, alias = "upstream_ca")]
    upstream_ca: Vec<PathBuf>,
    #[serde(default)]
    resolve: Vec<String>,
    #[serde(alias = "max_body")]
    max_body: Option<SizeValue>,
    #[serde(default)]
    inspect: Vec<String>,
    #[serde(alias = "refuse_others")]
    refuse_others: Option<bool>,
    #[serde(alias = "connect_timeout")]
    connect_timeout: Option<u64>,
    #[serde(alias = "response_timeout")]
    response_timeout: Option<u64>,
    #[serde(alias = "drain_timeout")]
    drain_timeout: Option<u64>,
}

/// `max-body = 1048576` or `max-body = "1MiB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(usize),
    Text(String),
}

/// The settings after merging flags over the config file over the defaults.
pub struct Settings {
    pub proxy: ProxyConfig,
    pub policy: Option<PathBuf>,
    pub refuse_others: bool,
    pub inspect: Vec<String>,
}

impl RunArgs {
    /// Merges flags, config file and defaults; every error here is a bad configuration (exit 2).
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("bad config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let max_body = match (self.max_body, file.max_body) {
            (Some(flag), _) => flag,
            (None, Some(SizeValue::Bytes(n))) => n,
            (None, Some(SizeValue::Text(text))) => {
                parse_size(&text).map_err(|e| anyhow::anyhow!("config max-body: {e}"))?
            }
            (None, None) => ProxyConfig::DEFAULT_MAX_BODY,
        };
        let pick = |flag: &Vec<PathBuf>, file: Vec<PathBuf>| {
            if flag.is_empty() {
                file
            } else {
                flag.clone()
            }
        };
        let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
            flag.or(file).map(Duration::from_secs).unwrap_or(default)
        };
        let policy = self.policy.clone().or(file.policy);
        if let Some(dir) = &policy {
            if !dir.is_dir() {
                bail!("policy directory {} does not exist", dir.display());
            }
        }
        let resolve = if self.resolve.is_empty() {
            file.resolve
        } else {
            self.resolve.clone()
        };
        let proxy = ProxyConfig {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| default_addr(ProxyConfig::DEFAULT_LISTEN)),
            admin: self
                .admin
                .or(file.admin)
                .unwrap_or_else(|| default_addr(ProxyConfig::DEFAULT_ADMIN)),
            data_dir: data_dir(self.data_dir.clone().or(file.data_dir))?,
            upstream_ca: pick(&self.upstream_ca, file.upstream_ca),
            resolve,
            max_body,
            connect_timeout: secs(
                self.connect_timeout,
                file.connect_timeout,
                ProxyConfig::DEFAULT_CONNECT_TIMEOUT,
            ),
            response_timeout: secs(
                self.response_timeout,
                file.response_timeout,
                ProxyConfig::DEFAULT_RESPONSE_TIMEOUT,
            ),
            drain_timeout: secs(
                self.drain_timeout,
                file.drain_timeout,
                ProxyConfig::DEFAULT_DRAIN_TIMEOUT,
            ),
            leaf_cache_size: ProxyConfig::DEFAULT_LEAF_CACHE,
            body_idle_timeout: ProxyConfig::DEFAULT_BODY_IDLE_TIMEOUT,
            tunnel_idle_timeout: ProxyConfig::DEFAULT_TUNNEL_IDLE_TIMEOUT,
        };
        for ca in &proxy.upstream_ca {
            if !ca.is_file() {
                bail!("--upstream-ca {} is not a file", ca.display());
            }
        }
        let inspect = if self.inspect.is_empty() {
            file.inspect
        } else {
            self.inspect.clone()
        };
        let inspect = inspect
            .iter()
            .map(|h| egress_guard::proxy::host::inspect_target(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        Ok(Settings {
            proxy,
            policy,
            refuse_others: self.refuse_others || file.refuse_others.unwrap_or(false),
            inspect,
        })
    }
}

impl Settings {
    /// The gate the proxy asks: the policy engine, with `--policy DIR` (watched and reloaded on
    /// change or SIGHUP) or the shipped default embedded in the binary. A policy that does not
    /// load is a bad configuration (exit 2), never a silent pass-through.
    pub fn gate(&self) -> anyhow::Result<Arc<dyn Gate>> {
        use egress_guard::policy::{loader, reload, PolicyGate};
        let scanners: Arc<loader::ScannerFactory> = Arc::new(loader::builtin_scanner);
        let loaded = match &self.policy {
            Some(dir) => loader::load_dir(dir, scanners.as_ref()),
            None => loader::load_embedded(scanners.as_ref()),
        }
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
        let inspect = self
            .inspect
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let gate = Arc::new(
            PolicyGate::new(
                loaded,
                Arc::new(egress_guard::policy::decision::TracingSink),
            )
            .with_route_overrides(inspect, self.refuse_others),
        );
        if let Some(dir) = &self.policy {
            reload::watch(&gate, dir.clone(), scanners, Duration::from_secs(1));
        }
        Ok(gate)
    }
}

fn default_addr(text: &str) -> SocketAddr {
    text.parse().expect("built-in default address is valid")
}

/// `--data-dir`, else `EGRESS_GUARD_DATA_DIR` (clap), else the platform data dir.
pub fn data_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir),
        None => dirs::data_dir()
            .map(|d| d.join("egress-guard"))
            .context("no platform data directory (no HOME?); pass --data-dir"),
    }
}

/// `32MiB`, `512KiB`, `1MB`, `1048576`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 32MiB or 1048576"))?;
    let multiplier: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("`{text}`: unknown unit (use KiB, MiB or GiB)")),
    };
    n.checked_mul(multiplier)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}` is not a usable size"))
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    init_logging("info");
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let gate = settings.gate()?;
        let proxy = Proxy::start(settings.proxy.clone(), gate).await?;
        // Listening for SIGTERM before saying "listening": a service manager (or a test) that
        // stops the proxy right after the start-up line must get a drain, not the default
        // disposition of the signal, which kills the process on the spot.
        let mut signals = StopSignals::new();
        announce(&proxy);
        if !proxy.proxy_addr.ip().is_loopback() {
            tracing::warn!(
                "listening on {}, not loopback: anyone who can reach it can send traffic through \
                 this proxy",
                proxy.proxy_addr
            );
        }
        tracing::info!(
            "point agents at it with `eval \"$(egress-guard env)\"` or `egress-guard exec -- CMD`; \
             base URLs: http://{}/anthropic, /openai, /gemini",
            proxy.proxy_addr
        );
        let stop = proxy.shutdown_token();
        let grace = settings.proxy.drain_timeout;
        tokio::spawn(async move {
            signals.recv().await;
            tracing::info!(
                "stopping: no new connections; in-flight requests get up to {}s",
                grace.as_secs()
            );
            stop.cancel();
            signals.recv().await;
            tracing::warn!("second signal: exiting without waiting");
            std::process::exit(1);
        });
        match proxy.run_until_stopped().await {
            Drained::Clean => tracing::info!("stopped cleanly"),
            Drained::TimedOut => {
                tracing::warn!("grace period over; remaining requests were cut")
            }
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// The one machine-readable start-up line scripts and tests wait for.
pub fn announce(proxy: &Proxy) {
    eprintln!(
        "egress-guard listening proxy={} admin={} ca={}",
        proxy.proxy_addr,
        proxy.admin_addr,
        proxy.ca_path.display()
    );
}

/// Logs to stderr, filtered by `RUST_LOG` (e.g. `egress_guard=debug`), else at `default`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal, never in a log file or a test's captured stderr.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// SIGINT and SIGTERM, registered when this is made (not when first awaited).
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// The next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// For `ca`: the data directory's CA certificate path, checked to exist.
pub fn existing_ca(data_dir: &Path) -> Option<PathBuf> {
    let path = egress_guard::tls::LocalCa::cert_path(data_dir);
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(parse_size("32MiB"), Ok(32 * 1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1048576"), Ok(1048576));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }
}
