//! Runs the real `egress-guard` binary for a test: a temporary data dir, ephemeral ports, the
//! fake upstream's `--resolve` pins and CA; killed when dropped.
//!
//! The ports are read from the one start-up line the binary prints to stderr
//! (`egress-guard listening proxy=... admin=... ca=...`), so nothing races on a port number.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Bound on how long start-up or exit may take before the test fails (not a timing assertion:
/// only a guard against hanging the suite).
const PATIENCE: Duration = Duration::from_secs(60);

pub struct Guard {
    child: Option<Child>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub ca_path: PathBuf,
    data_dir: tempfile::TempDir,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Guard {
    /// The path of the binary under test.
    pub fn binary() -> &'static str {
        env!("CARGO_BIN_EXE_egress-guard")
    }

    /// `egress-guard run` on ephemeral ports with a fresh data dir, plus `args`.
    pub fn start(args: &[String]) -> Guard {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let mut command = Command::new(Self::binary());
        command
            .arg("run")
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(args)
            .env("RUST_LOG", "info,egress_guard=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn egress-guard");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[egress-guard] {line}");
                if line.starts_with("egress-guard listening ") {
                    let _ = tx.send(line.clone());
                }
                let (lines, changed) = &*sink;
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                changed.notify_all();
            }
        });
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("egress-guard did not start; its stderr is above");
            }
        };
        let field = |name: &str| -> String {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
                .to_string()
        };
        Guard {
            child: Some(child),
            proxy: field("proxy").parse().expect("proxy address"),
            admin: field("admin").parse().expect("admin address"),
            ca_path: PathBuf::from(field("ca")),
            data_dir,
            log,
        }
    }

    /// Started against a fake upstream: `--resolve` pins and `--upstream-ca`, plus `extra` args.
    pub fn for_upstream(resolve: Vec<String>, upstream_ca: &Path, extra: &[&str]) -> Guard {
        let mut args = resolve_flags(resolve);
        args.push("--upstream-ca".to_string());
        args.push(upstream_ca.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start(&args)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca_path).expect("read the guard's CA")
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    /// A client that goes through the proxy for http and https and trusts ONLY our CA.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("client")
    }

    /// Same, HTTP/1.1 only on the client side.
    pub fn client_http1(&self) -> reqwest::Client {
        self.client_builder().http1_only().build().expect("client")
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem()).expect("our CA is PEM");
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.proxy_url()).expect("proxy url"))
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .use_rustls_tls()
    }

    /// A client for base-URL mode and the admin listener: no proxy, plain HTTP.
    pub fn direct_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The Prometheus text the admin listener serves at `/metrics`.
    pub async fn metrics(&self) -> String {
        self.direct_client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Everything the binary has printed to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (on a helper thread, woken by each new line) until a stderr line contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let log = self.log.clone();
        let needle = needle.to_string();
        tokio::task::spawn_blocking(move || {
            let (lines, changed) = &*log;
            let guard = lines.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, timeout) = changed
                .wait_timeout_while(guard, PATIENCE, |lines| {
                    !lines.iter().any(|l| l.contains(&needle))
                })
                .unwrap_or_else(|e| e.into_inner());
            assert!(
                !timeout.timed_out(),
                "egress-guard never logged {needle:?}; it logged {guard:?}"
            );
        })
        .await
        .expect("log waiter");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM (as a service manager would).
    pub fn terminate(&self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pid = i32::try_from(self.pid()).expect("pid fits");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("send SIGTERM");
    }

    /// Waits for the process to exit by itself, blocking a helper thread, not the runtime.
    pub async fn exit_status(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        tokio::time::timeout(PATIENCE, rx)
            .await
            .expect("egress-guard did not exit")
            .expect("waiter thread")
            .expect("wait for egress-guard")
    }
}

/// `--resolve PIN` for each pin.
pub fn resolve_flags(pins: Vec<String>) -> Vec<String> {
    pins.into_iter()
        .flat_map(|pin| ["--resolve".to_string(), pin])
        .collect()
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Low-level client steps for tests that need to see the wire: a hand-written CONNECT, TLS over
/// it trusting exactly the given CA, and reading a response head.
pub mod wire {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;

    /// Reads up to the blank line that ends an HTTP/1.1 response head.
    pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read a response head");
            assert_eq!(n, 1, "connection closed inside a response head: {head:?}");
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).to_string()
    }

    /// Sends `CONNECT authority` and returns the reply's head and the open stream.
    pub async fn connect(proxy: SocketAddr, authority: &str) -> (String, TcpStream) {
        let mut stream = TcpStream::connect(proxy).await.expect("reach the proxy");
        stream
            .write_all(
                format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
            )
            .await
            .expect("send CONNECT");
        let head = read_head(&mut stream).await;
        (head, stream)
    }

    /// A TLS client configuration that trusts only the CAs in `ca_pem`, offering `alpn`.
    pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem) {
            let cert: rustls_pki_types::CertificateDer = cert.expect("PEM certificate");
            roots.add(cert).expect("usable root");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// TLS to `host` over an open tunnel, trusting only `ca_pem`.
    pub async fn tls(
        stream: TcpStream,
        host: &str,
        ca_pem: &[u8],
        alpn: &[&[u8]],
    ) -> TlsStream<TcpStream> {
        let name = rustls_pki_types::ServerName::try_from(host.to_string()).expect("server name");
        tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem, alpn)))
            .connect(name, stream)
            .await
            .expect("TLS handshake")
    }
}
