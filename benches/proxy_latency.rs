//! Proxy core benchmarks (issue 4): what the proxy adds to a request that it lets through.
//!
//! One run starts the fake upstream (tests/support/upstream.rs) in its own thread and the release
//! `egress-guard` binary as a child process, then measures:
//!
//! - `latency`: the same POST `/v1/messages` sent straight to the fake upstream and through the
//!   proxy (CONNECT + interception, and base-URL mode), alternating request by request so both
//!   see the same machine noise; p50/p99 per cell (HTTP/1.1 and HTTP/2, 1 KB and 200 KB bodies,
//!   keep-alive connections, one request in flight).
//! - `load`: requests/s at 64 concurrent connections with h2load (Debian `nghttp2-client`),
//!   direct to the upstream vs through base-URL mode (h2load cannot speak CONNECT).
//! - `rss`: the proxy's VmRSS with 256 idle intercepted keep-alive connections, on a fresh proxy.
//!
//! Usage: `cargo bench --bench proxy_latency -- [latency] [load] [rss]` (all three when none is
//! named). `scripts/bench-proxy.sh` is the documented entry point. Everything is loopback only
//! and bounded in count and time. Settings (environment):
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `EGRESS_GUARD_BIN` | proxy binary | `target/release/egress-guard` |
//! | `BENCH_REQUESTS` | requests per path per latency cell | 2000 |
//! | `BENCH_CELL_SECS` | time cap per latency cell | 60 |
//! | `BENCH_LOAD_REQUESTS` | requests per h2load run | 20000 |
//! | `BENCH_DIRECT_ONLY` | `1`: measure the upstream alone (no proxy) | unset |
//! | `BENCH_PERF_OUT` | record a perf profile of the proxy during `latency` into this file | unset |
//! | `BENCH_PERF_CALLGRAPH` | perf's `--call-graph` mode (`dwarf` shows who calls `memmove`) | `fp` |
//! | `BENCH_BODIES` | latency body sizes in KB, comma-separated (`200`: the issue 6 goal's cell only) | `1,200` |
//! | `BENCH_FRESH` | `1`: every request carries text never sent before, so the proxy scans all of it (a conversation's first turn) instead of finding its history already scanned | unset |
//! | `EGRESS_GUARD_BIN_B` | `latency` only: a second proxy build, its requests interleaved with the first's (A/B); perf, if asked, records this one | unset |
//!
//! The bench prints markdown tables to stdout and progress to stderr.

#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use reqwest::{Certificate, Client, Version};
use upstream::FakeUpstream;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; anything not starting with `-` names a phase.
    let mut phases: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if phases.is_empty() {
        phases = vec!["latency".into(), "load".into(), "rss".into()];
    }
    let direct_only = std::env::var("BENCH_DIRECT_ONLY").is_ok_and(|v| v == "1");
    let bin = std::env::var("EGRESS_GUARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/egress-guard")
        });
    let proxy_bin = if direct_only {
        None
    } else if bin.exists() {
        Some(bin)
    } else {
        eprintln!(
            "note: {} not found (build it with `cargo build --release`); measuring direct only",
            bin.display()
        );
        None
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (upstream, _upstream_thread) = start_upstream_thread(false)?;
    upstream.set_recording(false);

    print_machine();
    for phase in &phases {
        match phase.as_str() {
            "latency" => rt.block_on(latency_phase(&upstream, proxy_bin.as_deref()))?,
            "load" => load_phase(&upstream, proxy_bin.as_deref())?,
            "rss" => match proxy_bin.as_deref() {
                Some(bin) => rt.block_on(rss_phase(&upstream, bin))?,
                None => println!("\n(rss: skipped, no proxy binary)\n"),
            },
            other => bail!("unknown phase `{other}` (latency, load, rss)"),
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload average at end: {}", load.trim());
    Ok(())
}

/// The fake upstream runs on its own thread and runtime so its work does not queue behind the
/// client's on one executor; the returned handle stops it when dropped.
fn start_upstream_thread(plain: bool) -> Result<(FakeUpstream, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std_mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("fake-upstream".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("upstream runtime");
            rt.block_on(async move {
                let up = if plain {
                    FakeUpstream::start_plain().await
                } else {
                    FakeUpstream::start().await
                };
                let _ = tx.send(up);
                // Serve until the process exits; the FakeUpstream handle aborts the server.
                std::future::pending::<()>().await;
            });
        })?;
    let up = rx
        .recv_timeout(Duration::from_secs(30))
        .context("fake upstream did not start")?;
    Ok((up, handle))
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    // Other work on the machine skews every figure; the load average says how much there was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!("machine: {cores} cores, {cpu}; load average at start: {load}");
}

// ---------------------------------------------------------------------------------------------
// The proxy under test

/// A running `egress-guard run` child; killed on drop.
struct Proxy {
    child: Child,
    proxy_addr: String,
    admin_addr: String,
    ca_pem: Vec<u8>,
    _data_dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(bin: &Path, upstream: &FakeUpstream) -> Result<Proxy> {
        let data_dir = tempfile::tempdir()?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--upstream-ca")
            .arg(upstream.ca_pem_path());
        for r in upstream.resolve_args() {
            cmd.arg("--resolve").arg(r);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let stderr = child.stderr.take().context("proxy stderr")?;
        let (tx, rx) = std_mpsc::channel();
        // Keep draining stderr for the proxy's whole life: a full pipe would stall its logging,
        // and so its requests.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut tail: Vec<String> = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if line.contains("egress-guard listening") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(line));
                    }
                } else if tx.is_some() && tail.len() < 50 {
                    tail.push(line);
                }
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(Err(tail.join("\n")));
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(line)) => line,
            Ok(Err(tail)) => bail!("the proxy exited before listening:\n{tail}"),
            Err(_) => bail!("the proxy did not print its listening line within 60 s"),
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_owned)
        };
        let proxy_addr = field("proxy=").context("no proxy= in the listening line")?;
        let admin_addr = field("admin=").context("no admin= in the listening line")?;
        let ca_pem = match field("ca=") {
            Some(path) => std::fs::read(&path).with_context(|| format!("read proxy CA {path}"))?,
            None => {
                let out = Command::new(bin)
                    .args(["ca", "path", "--data-dir"])
                    .arg(data_dir.path())
                    .output()?;
                let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                std::fs::read(&path).with_context(|| format!("read proxy CA {path}"))?
            }
        };
        eprintln!(
            "proxy pid {} listening on {proxy_addr}, admin {admin_addr}",
            child.id()
        );
        Ok(Proxy {
            child,
            proxy_addr,
            admin_addr,
            ca_pem,
            _data_dir: data_dir,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU time of the proxy so far, in clock ticks, from /proc.
    fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the command name (which may hold spaces) close with `)`.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }

    /// (VmRSS, VmHWM) in KiB, from /proc.
    fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc status"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    H1,
    H2,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
        }
    }

    fn version(self) -> Version {
        match self {
            Proto::H1 => Version::HTTP_11,
            Proto::H2 => Version::HTTP_2,
        }
    }
}

fn base_builder(proto: Proto) -> reqwest::ClientBuilder {
    let b = Client::builder()
        .tls_built_in_root_certs(false)
        .no_proxy()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        // A guard against a wedged run, not a measurement.
        .timeout(Duration::from_secs(30));
    match proto {
        Proto::H1 => b.http1_only(),
        Proto::H2 => b,
    }
}

/// Straight to the fake upstream over TLS, `api.anthropic.com` pinned to its address.
fn direct_client(up: &FakeUpstream, proto: Proto) -> Result<(Client, String)> {
    let ca = Certificate::from_pem(&std::fs::read(up.ca_pem_path())?)?;
    let client = base_builder(proto)
        .add_root_certificate(ca)
        .resolve("api.anthropic.com", up.addr())
        .build()?;
    let url = format!("https://api.anthropic.com:{}/v1/messages", up.addr().port());
    Ok((client, url))
}

/// Through the proxy as an agent uses it: `HTTPS_PROXY`, CONNECT, TLS intercepted with the
/// proxy's CA.
fn connect_client(proxy: &Proxy, proto: Proto) -> Result<(Client, String)> {
    let client = base_builder(proto)
        .add_root_certificate(Certificate::from_pem(&proxy.ca_pem)?)
        .proxy(reqwest::Proxy::https(format!(
            "http://{}",
            proxy.proxy_addr
        ))?)
        .build()?;
    Ok((client, "https://api.anthropic.com/v1/messages".into()))
}

/// Base-URL mode: plain HTTP to the proxy's listener (`ANTHROPIC_BASE_URL=http://.../anthropic`).
/// HTTP/2 here means h2c with prior knowledge.
fn base_url_client(proxy: &Proxy, proto: Proto) -> Result<(Client, String)> {
    let b = base_builder(proto);
    let b = match proto {
        Proto::H1 => b,
        Proto::H2 => b.http2_prior_knowledge(),
    };
    let url = format!("http://{}/anthropic/v1/messages", proxy.proxy_addr);
    Ok((b.build()?, url))
}

/// Marks `body` (from [`messages_body`]) as request number `n`: the filler's first words become
/// letters that spell `n`, so no two requests share their history and the proxy's cache of
/// clean message groups never hits. Letters, not digits: digit runs would wake the digit gate.
fn fresh_body(body: &Bytes, n: usize) -> Bytes {
    let mut bytes = body.to_vec();
    let Some(at) = bytes.windows(4).position(|w| w == b"\"The") else {
        return Bytes::from(bytes);
    };
    let at = at + 1;
    let mut n = n;
    for byte in bytes.iter_mut().skip(at).take(12) {
        *byte = b'a' + (n % 26) as u8;
        n /= 26;
    }
    Bytes::from(bytes)
}

/// A clean Anthropic Messages request of about `size` bytes. The filler sits in an earlier turn
/// and the last user turn is short, so the fake's reply (which echoes the last turn) stays small
/// and the figure is about the request path. The text is plain prose: nothing for a detector.
fn messages_body(size: usize) -> Bytes {
    let head =
        r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":""#;
    let tail = r#""},{"role":"assistant","content":"Noted."},{"role":"user","content":"Summarise the notes above in one line."}]}"#;
    let prose = "The release notes describe how the scheduler batches small jobs together. ";
    let fill = size.saturating_sub(head.len() + tail.len());
    let filler: String = prose.chars().cycle().take(fill).collect();
    Bytes::from(format!("{head}{filler}{tail}"))
}

async fn timed_post(client: &Client, url: &str, body: &Bytes, proto: Proto) -> Result<Duration> {
    let started = Instant::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "sk-ant-bench-not-a-key")
        .body(body.clone())
        .send()
        .await?;
    let status = resp.status();
    let version = resp.version();
    let reply = resp.bytes().await?;
    let elapsed = started.elapsed();
    ensure!(
        status.is_success(),
        "{url}: HTTP {status}: {}",
        String::from_utf8_lossy(&reply[..reply.len().min(300)])
    );
    ensure!(
        version == proto.version(),
        "{url}: asked for {} but got {version:?}",
        proto.name()
    );
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// latency

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

struct Samples(Vec<Duration>);

impl Samples {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort_unstable();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn added(a: Duration, b: Duration) -> String {
    let d = a.as_secs_f64() - b.as_secs_f64();
    format!("{:+.3}", d * 1e3)
}

struct PerfRecording(Child);

impl PerfRecording {
    fn start(pid: u32) -> Option<PerfRecording> {
        let out = std::env::var("BENCH_PERF_OUT").ok()?;
        let child = Command::new("perf")
            .args([
                "record",
                "-F",
                "1999",
                "--call-graph",
                &std::env::var("BENCH_PERF_CALLGRAPH").unwrap_or_else(|_| "fp".into()),
                "-o",
                &out,
                "-p",
                &pid.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("perf not started: {e}"))
            .ok()?;
        eprintln!("perf recording proxy pid {pid} into {out}");
        Some(PerfRecording(child))
    }
}

impl Drop for PerfRecording {
    fn drop(&mut self) {
        // perf writes its file on SIGINT; this is our own child, by pid.
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

async fn latency_phase(up: &FakeUpstream, bin: Option<&Path>) -> Result<()> {
    let per_path = env_num("BENCH_REQUESTS", 2000) as usize;
    let cap = Duration::from_secs(env_num("BENCH_CELL_SECS", 60));
    let fresh = std::env::var("BENCH_FRESH").is_ok_and(|v| v == "1");
    let mut sent = 0usize;
    let bodies_kb: Vec<usize> = std::env::var("BENCH_BODIES")
        .unwrap_or_else(|_| "1,200".into())
        .split(',')
        .filter_map(|kb| kb.trim().parse().ok())
        .collect();
    // The proxies under test: the one named by EGRESS_GUARD_BIN and, for an A/B comparison,
    // a second build (EGRESS_GUARD_BIN_B) whose requests are interleaved with the first's, so
    // both see the very same machine noise.
    let mut proxies: Vec<(&str, Proxy)> = Vec::new();
    if let Some(bin) = bin {
        proxies.push(("", Proxy::start(bin, up)?));
        if let Some(b) = std::env::var_os("EGRESS_GUARD_BIN_B") {
            proxies.push((" (B)", Proxy::start(Path::new(&b), up)?));
        }
    }
    let _perf = proxies
        .last()
        .and_then(|(_, p)| PerfRecording::start(p.pid()));

    let mut cpu_notes: Vec<String> = Vec::new();
    println!("\n### Pass-through latency (one request in flight, keep-alive)\n");
    println!(
        "{per_path} requests per path per cell (cap {} s); POST /v1/messages, clean prose, small reply{}.\n",
        cap.as_secs(),
        if fresh {
            "; every request's text new (BENCH_FRESH=1: nothing cached, all of it scanned)"
        } else {
            "; the same request each time (its history found already scanned, as for an agent's later turns)"
        }
    );
    if proxies.len() > 1 {
        println!(
            "A/B: \"(B)\" rows are EGRESS_GUARD_BIN_B, the others EGRESS_GUARD_BIN, requests interleaved.\n"
        );
    }
    println!("| protocol | body | path | n | p50 ms | p99 ms | added p50 ms | added p99 ms |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for proto in [Proto::H1, Proto::H2] {
        for &kb in &bodies_kb {
            let label = format!("{kb} KB");
            let label = label.as_str();
            let body = messages_body(kb * 1024);
            let mut paths: Vec<(String, Client, String)> = Vec::new();
            let (c, u) = direct_client(up, proto)?;
            paths.push(("direct".into(), c, u));
            for (suffix, p) in &proxies {
                let (c, u) = connect_client(p, proto)?;
                paths.push((format!("proxy CONNECT{suffix}"), c, u));
                let (c, u) = base_url_client(p, proto)?;
                paths.push((format!("proxy base-URL{suffix}"), c, u));
            }
            // Warm up every path (connections, TLS, leaf cache, allocator), and drop a path that
            // does not work at all (e.g. h2c in base-URL mode) instead of failing the run.
            let mut working = Vec::new();
            for (name, c, u) in paths {
                let mut ok = true;
                for _ in 0..50 {
                    if let Err(e) = timed_post(&c, &u, &body, proto).await {
                        eprintln!("{} {label} {name}: skipped: {e:#}", proto.name());
                        ok = false;
                        break;
                    }
                }
                if ok {
                    working.push((name, c, u, Samples(Vec::with_capacity(per_path))));
                } else if name == "direct" {
                    bail!("the direct path must work");
                }
            }
            // Round-robin, one request per path per round, so a noisy moment hits every path.
            let cpu_before: Vec<Option<u64>> = proxies.iter().map(|(_, p)| p.cpu_ticks()).collect();
            let started = Instant::now();
            for round in 0..per_path {
                if started.elapsed() > cap {
                    eprintln!("{} {label}: time cap after {round} rounds", proto.name());
                    break;
                }
                let k = working.len();
                for j in 0..k {
                    let (_, c, u, s) = &mut working[(round + j) % k];
                    let body = if fresh {
                        sent += 1;
                        fresh_body(&body, sent)
                    } else {
                        body.clone()
                    };
                    s.0.push(timed_post(c, u, &body, proto).await?);
                }
            }
            let (base50, base99) = (working[0].3.pct(50.0), working[0].3.pct(99.0));
            for (name, _, _, s) in &working {
                let (p50, p99) = (s.pct(50.0), s.pct(99.0));
                let (a50, a99) = if name == "direct" {
                    ("".to_string(), "".to_string())
                } else {
                    (added(p50, base50), added(p99, base99))
                };
                println!(
                    "| {} | {label} | {name} | {} | {} | {} | {a50} | {a99} |",
                    proto.name(),
                    s.0.len(),
                    ms(p50),
                    ms(p99)
                );
            }
            // Each proxy's own CPU time per request it carried: unlike wall time, it hardly
            // moves with what else the machine is doing, so it compares two builds fairly.
            for ((suffix, p), before) in proxies.iter().zip(&cpu_before) {
                let proxied: usize = working
                    .iter()
                    .filter(|(name, ..)| {
                        name != "direct" && (suffix.is_empty() != name.ends_with(" (B)"))
                    })
                    .map(|(.., s)| s.0.len())
                    .sum();
                if let (Some(before), Some(after), true) = (*before, p.cpu_ticks(), proxied > 0) {
                    cpu_notes.push(format!(
                        "{} {label}{suffix}: {:.3} ms",
                        proto.name(),
                        (after - before) as f64 * 1e3 / ticks_per_second() / proxied as f64
                    ));
                }
            }
            std::io::stdout().flush()?;
        }
    }
    if !cpu_notes.is_empty() {
        println!(
            "\nproxy CPU time (user + system) per proxied request: {}",
            cpu_notes.join(", ")
        );
    }
    for (suffix, p) in &proxies {
        if let Some(mean) = mean_inspect_ms(p).await {
            println!("\nproxy{suffix}'s own `egress_guard_inspect_duration_seconds` mean over the run: {mean:.3} ms");
        }
        let (rss, hwm) = p.memory_kib()?;
        println!(
            "\nproxy{suffix} memory after the latency run: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    Ok(())
}

/// The mean of the proxy's own inspection histogram, from its admin listener, if it has one.
async fn mean_inspect_ms(proxy: &Proxy) -> Option<f64> {
    let url = format!("http://{}/metrics", proxy.admin_addr);
    let text = Client::builder()
        .no_proxy()
        .build()
        .ok()?
        .get(url)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .reduce(|a, b| a + b)
    };
    let sum = value("egress_guard_inspect_duration_seconds_sum")?;
    let count = value("egress_guard_inspect_duration_seconds_count")?;
    (count > 0.0).then(|| sum / count * 1e3)
}

// ---------------------------------------------------------------------------------------------
// load (h2load)

struct H2loadResult {
    rps: f64,
    succeeded: u64,
    failed: u64,
    mean_ms: Option<f64>,
}

fn run_h2load(url: &str, h1: bool, body_file: &Path, n: u64) -> Result<H2loadResult> {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "h2load"]);
    if h1 {
        cmd.arg("--h1");
    }
    cmd.args(["-c", "64", "-t", "1", "-m", "1", "-n", &n.to_string()])
        .arg("-d")
        .arg(body_file)
        .args(["-H", "content-type: application/json"])
        .args(["-H", "anthropic-version: 2023-06-01"])
        .args(["-H", "x-api-key: sk-ant-bench-not-a-key"])
        .arg(url);
    let out = cmd
        .output()
        .context("run h2load (apt-get install nghttp2-client)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|w| w.trim_end_matches(" req/s").parse::<f64>().ok())
        .ok_or_else(|| anyhow!("no req/s in h2load output:\n{text}"))?;
    let req_line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_default();
    let count = |word: &str| {
        req_line
            .split(", ")
            .find(|p| p.ends_with(word))
            .and_then(|p| p.split_whitespace().rev().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut status_2xx = 0;
    if let Some(l) = text.lines().find(|l| l.starts_with("status codes:")) {
        status_2xx = l
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    let mean_ms = text
        .lines()
        .find(|l| l.starts_with("time for request:"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(parse_h2load_time);
    Ok(H2loadResult {
        rps,
        succeeded: status_2xx.min(count("succeeded")),
        failed: count("failed") + count("succeeded").saturating_sub(status_2xx),
        mean_ms,
    })
}

/// h2load prints times like `1.23ms`, `456us`, `1.01s`.
fn parse_h2load_time(s: &str) -> Option<f64> {
    if let Some(v) = s.strip_suffix("us") {
        v.parse::<f64>().ok().map(|v| v / 1e3)
    } else if let Some(v) = s.strip_suffix("ms") {
        v.parse().ok()
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<f64>().ok().map(|v| v * 1e3)
    } else {
        None
    }
}

fn load_phase(up: &FakeUpstream, bin: Option<&Path>) -> Result<()> {
    let n = env_num("BENCH_LOAD_REQUESTS", 20000);
    let dir = tempfile::tempdir()?;
    let body_file = dir.path().join("body-1k.json");
    std::fs::write(&body_file, messages_body(1024))?;
    let proxy = match bin {
        Some(bin) => Some(Proxy::start(bin, up)?),
        None => None,
    };
    println!("\n### Requests/s at 64 concurrent connections (h2load, 1 KB POST /v1/messages)\n");
    println!("{n} requests per row, `h2load -c 64 -t 1 -m 1`; the load generator, the proxy and the upstream share the 2 cores.\n");
    println!("| path | client protocol | req/s | mean ms | succeeded | failed |");
    println!("|---|---|---:|---:|---:|---:|");
    // The fair baseline for base-URL mode is plain HTTP straight to an upstream: the load
    // generator then does the same work in both rows, and the difference is all the proxy's
    // (its parsing, its inspection, and the TLS it speaks upstream).
    let (plain, _plain_thread) = start_upstream_thread(true)?;
    plain.set_recording(false);
    let direct_plain = format!("http://{}/v1/messages", plain.addr());
    let direct = format!("https://127.0.0.1:{}/v1/messages", up.addr().port());
    let mut rows: Vec<(String, &str, String, bool)> = vec![
        (
            "direct, plain".into(),
            "HTTP/1.1",
            direct_plain.clone(),
            true,
        ),
        ("direct, plain".into(), "HTTP/2 (h2c)", direct_plain, false),
        ("direct, TLS".into(), "HTTP/1.1", direct.clone(), true),
        ("direct, TLS".into(), "HTTP/2", direct, false),
    ];
    if let Some(p) = &proxy {
        let via = format!("http://{}/anthropic/v1/messages", p.proxy_addr);
        rows.push((
            "proxy base-URL (plain in, TLS upstream)".into(),
            "HTTP/1.1",
            via.clone(),
            true,
        ));
        rows.push((
            "proxy base-URL (plain in, TLS upstream)".into(),
            "HTTP/2 (h2c)",
            via,
            false,
        ));
    }
    for (name, proto, url, h1) in rows {
        match run_h2load(&url, h1, &body_file, n) {
            Ok(r) => println!(
                "| {name} | {proto} | {:.0} | {} | {} | {} |",
                r.rps,
                r.mean_ms.map(|m| format!("{m:.2}")).unwrap_or_default(),
                r.succeeded,
                r.failed
            ),
            Err(e) => {
                eprintln!("{name} {proto}: {e:#}");
                println!("| {name} | {proto} | n/a | | | |");
            }
        }
        std::io::stdout().flush()?;
    }
    if let Some(p) = &proxy {
        let (rss, hwm) = p.memory_kib()?;
        println!(
            "\nproxy memory after the load run: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// rss

async fn rss_phase(up: &FakeUpstream, bin: &Path) -> Result<()> {
    const CONNECTIONS: usize = 256;
    println!("\n### Proxy memory at {CONNECTIONS} idle connections\n");
    println!("Fresh proxy per row; each connection is a CONNECT tunnel to api.anthropic.com, intercepted, that made one small request and stays open (keep-alive).\n");
    println!("| client protocol | VmRSS at start MiB | VmRSS with {CONNECTIONS} idle MiB | per connection KiB | VmHWM MiB |");
    println!("|---|---:|---:|---:|---:|");
    for proto in [Proto::H1, Proto::H2] {
        let proxy = Proxy::start(bin, up)?;
        let (start_rss, _) = proxy.memory_kib()?;
        let body = messages_body(1024);
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            // One client per connection: reqwest pools per client, so 256 clients hold 256
            // distinct tunnels.
            let (c, u) = connect_client(&proxy, proto)?;
            clients.push((c, u));
        }
        // 16 at a time: a connect storm is not what is measured here.
        for batch in clients.chunks(16) {
            let mut set = tokio::task::JoinSet::new();
            for (c, u) in batch {
                let (c, u, b) = (c.clone(), u.clone(), body.clone());
                set.spawn(async move { timed_post(&c, &u, &b, proto).await });
            }
            while let Some(r) = set.join_next().await {
                r??;
            }
        }
        let (rss, hwm) = proxy.memory_kib()?;
        let per_conn = (rss.saturating_sub(start_rss)) as f64 / CONNECTIONS as f64;
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.1} |",
            proto.name(),
            start_rss as f64 / 1024.0,
            rss as f64 / 1024.0,
            per_conn,
            hwm as f64 / 1024.0
        );
        std::io::stdout().flush()?;
        drop(clients);
    }
    Ok(())
}
