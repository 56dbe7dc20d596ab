//! `egress-guard env` and `egress-guard exec`: point agents at the proxy.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use egress_guard::proxy::Proxy;
use egress_guard::tls::LocalCa;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Sh,
    Fish,
    Powershell,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[arg(long, value_enum, default_value = "sh")]
    pub shell: Shell,
    #[command(flatten)]
    pub run: super::run::RunArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Start a proxy for the command's lifetime if none is running.
    #[arg(long)]
    pub start: bool,
    #[command(flatten)]
    pub run: super::run::RunArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<OsString>,
}

const BUNDLE_FILE: &str = "ca-bundle.pem";

/// The variables that send an agent's traffic through the proxy and make it trust our CA.
fn variables(proxy: SocketAddr, ca: &Path, bundle: &Path) -> Vec<(&'static str, String)> {
    // A wildcard listener is reached on loopback from this machine.
    let host = if proxy.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        proxy.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("http://{host}:{}", proxy.port());
    let ca = ca.display().to_string();
    let bundle = bundle.display().to_string();
    vec![
        ("HTTPS_PROXY", url.clone()),
        ("https_proxy", url.clone()),
        ("HTTP_PROXY", url.clone()),
        ("http_proxy", url),
        ("NO_PROXY", "localhost,127.0.0.1,::1".into()),
        ("no_proxy", "localhost,127.0.0.1,::1".into()),
        // Node's own fetch honours the *_PROXY variables only when asked (Node 24+).
        ("NODE_USE_ENV_PROXY", "1".into()),
        // Node adds this to its built-in roots, so our CA alone is right here.
        ("NODE_EXTRA_CA_CERTS", ca),
        // These replace the trust store, so they get the system roots plus our CA.
        ("SSL_CERT_FILE", bundle.clone()),
        ("REQUESTS_CA_BUNDLE", bundle.clone()),
        ("CURL_CA_BUNDLE", bundle),
    ]
}

fn render(shell: Shell, vars: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, value) in vars {
        let line = match shell {
            Shell::Sh => format!("export {name}='{}'\n", value.replace('\'', r"'\''")),
            Shell::Fish => format!(
                "set -gx {name} '{}';\n",
                value.replace('\\', r"\\").replace('\'', r"\'")
            ),
            Shell::Powershell => format!("$env:{name} = '{}'\n", value.replace('\'', "''")),
        };
        out.push_str(&line);
    }
    out
}

/// Creates the CA if needed and (re)writes the combined bundle: system roots + our CA.
fn prepare_trust(data_dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ca = LocalCa::load_or_create(data_dir).context("cannot set up the local CA")?;
    let bundle = data_dir.join(BUNDLE_FILE);
    let mut seen = std::collections::HashSet::new();
    let mut pem_text = String::new();
    // Our CA first, so a reader of the file sees what was added to the system's list.
    let ours = ca.cert_der().to_vec();
    let system = rustls_native_certs::load_native_certs().certs;
    for der in std::iter::once(ours).chain(system.into_iter().map(|c| c.as_ref().to_vec())) {
        if seen.insert(der.clone()) {
            pem_text.push_str(&pem::encode_config(
                &pem::Pem::new("CERTIFICATE", der),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            ));
        }
    }
    // Write then rename, so an agent starting meanwhile never reads half a bundle.
    let partial = data_dir.join(format!("{BUNDLE_FILE}.partial"));
    std::fs::write(&partial, pem_text)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &bundle)
        .with_context(|| format!("cannot write {}", bundle.display()))?;
    Ok((ca.path().to_path_buf(), bundle))
}

pub fn print(args: EnvArgs) -> anyhow::Result<ExitCode> {
    let settings = args.run.settings()?;
    let (ca, bundle) = prepare_trust(&settings.proxy.data_dir)?;
    print!(
        "{}",
        render(args.shell, &variables(settings.proxy.listen, &ca, &bundle))
    );
    Ok(ExitCode::SUCCESS)
}

pub fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let settings = args.run.settings()?;
    let (ca, bundle) = prepare_trust(&settings.proxy.data_dir)?;
    let (program, rest) = args
        .command
        .split_first()
        .context("no command given after --")?;

    if !args.start {
        let listen = settings.proxy.listen;
        let probe = if listen.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], listen.port()))
        } else {
            listen
        };
        if TcpStream::connect_timeout(&probe, Duration::from_secs(1)).is_err() {
            eprintln!(
                "egress-guard: no proxy is listening on {probe}. Start one with \
                 `egress-guard run`, or add --start to run one just for this command."
            );
            return Ok(ExitCode::from(2));
        }
        let status = std::process::Command::new(program)
            .args(rest)
            .envs(variables(listen, &ca, &bundle))
            .status()
            .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
        return Ok(exit_code(status));
    }

    // The command's own output is what the user is watching: only problems from us.
    super::run::init_logging("warn");
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let gate = settings.gate();
        let mut config = settings.proxy.clone();
        let proxy = match Proxy::start(config.clone(), gate.clone()).await {
            Ok(proxy) => proxy,
            Err(egress_guard::proxy::ProxyError::Bind { .. }) => {
                // Another proxy (or anything else) has the default ports: use free ones, since
                // the command is told where we are anyway.
                config.listen.set_port(0);
                config.admin.set_port(0);
                Proxy::start(config, gate).await?
            }
            Err(other) => return Err(other.into()),
        };
        super::run::announce(&proxy);
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .envs(variables(proxy.proxy_addr, &ca, &bundle))
            .spawn()
            .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
        let status = child.wait().await?;
        proxy.stop().await;
        Ok::<_, anyhow::Error>(exit_code(status))
    })
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return ExitCode::from(u8::try_from(128 + signal).unwrap_or(1));
        }
    }
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shell_quotes_its_own_way() {
        let vars = vec![("SSL_CERT_FILE", "/home/o'neil/ca.pem".to_string())];
        assert_eq!(
            render(Shell::Sh, &vars),
            "export SSL_CERT_FILE='/home/o'\\''neil/ca.pem'\n"
        );
        assert_eq!(
            render(Shell::Fish, &vars),
            "set -gx SSL_CERT_FILE '/home/o\\'neil/ca.pem';\n"
        );
        assert_eq!(
            render(Shell::Powershell, &vars),
            "$env:SSL_CERT_FILE = '/home/o''neil/ca.pem'\n"
        );
    }
}
