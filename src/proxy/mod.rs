//! The forward proxy: accept -> connect/intercept -> forward.
//!
//! Every intercepted request passes through one [`gate::Gate`] before a byte of it leaves; the
//! proxy itself never decides what is allowed. Reading order follows a request:
//! [`listener`] (accept, CONNECT or absolute-form or base-URL) -> [`connect`] (intercept or
//! tunnel) -> [`forward`] (collect body, gate, send upstream) -> [`body`] (stream back) with
//! [`upstream`] (pooled, verified client) and [`hop`] (hop-by-hop headers) beside it.

pub mod base_url;
mod body;
mod connect;
mod forward;
pub mod gate;
mod hop;
pub mod host;
mod listener;
pub mod relay;
pub mod sni;
pub mod upstream;
pub mod websocket;

/// The proxy's own test for a WebSocket upgrade: the policy must decide on the very same
/// requests the proxy then carries as WebSockets.
pub use hop::is_websocket_upgrade;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::{LeafCache, LocalCa, TlsError};
use gate::Gate;
use upstream::{ResolveMap, TcpConnector, UpstreamClient};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything `egress-guard run` can be told; the CLI fills it from flags and the config file.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub upstream_ca: Vec<PathBuf>,
    /// `HOST:PORT=ADDR:PORT` pins.
    pub resolve: Vec<String>,
    /// Largest request body the proxy collects for inspection; bigger ones are refused (413).
    pub max_body: usize,
    pub connect_timeout: Duration,
    /// Longest wait for an upstream's response head (not for the streamed body after it).
    pub response_timeout: Duration,
    /// Longest the proxy waits for in-flight requests when asked to stop.
    pub drain_timeout: Duration,
    /// How many hosts' leaf certificates to keep in memory.
    pub leaf_cache_size: usize,
    /// Longest a client may pause mid request body before it is answered `408`.
    pub body_idle_timeout: Duration,
    /// Longest a tunnel or upgraded connection may carry nothing either way before it is closed.
    pub tunnel_idle_timeout: Duration,
}

impl ProxyConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8877";
    pub const DEFAULT_ADMIN: &'static str = "127.0.0.1:8878";
    pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_LEAF_CACHE: usize = 256;
    pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = relay::TUNNEL_IDLE_TIMEOUT;
}

/// Why the proxy could not start. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("bad --resolve value `{0}`: expected HOST:PORT=ADDR:PORT, e.g. api.openai.com:443=127.0.0.1:8443")]
    BadResolve(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) gate: Arc<dyn Gate>,
    pub(crate) leaves: LeafCache,
    /// Relays plain `http://` requests to hosts that are not inspected.
    pub(crate) client: UpstreamClient,
    /// Carries intercepted requests: HTTPS only.
    pub(crate) intercept_client: UpstreamClient,
    /// Carries intercepted upgrade requests (WebSocket): HTTPS and HTTP/1.1 only.
    pub(crate) upgrade_client: UpstreamClient,
    pub(crate) tcp: TcpConnector,
    pub(crate) config: ProxyConfig,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

/// A running proxy (and its admin listener). Stop it with [`Proxy::stop`].
pub struct Proxy {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub ca_path: PathBuf,
    shutdown: CancellationToken,
    admin_stop: CancellationToken,
    ready: Arc<AtomicBool>,
    tracker: TaskTracker,
    drain_timeout: Duration,
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight request finished.
    Clean,
    /// The grace period ran out with requests still open; they were cut.
    TimedOut,
}

impl Proxy {
    /// Loads (or creates) the CA, binds both listeners and starts serving. Must be called inside
    /// a tokio runtime.
    pub async fn start(config: ProxyConfig, gate: Arc<dyn Gate>) -> Result<Self, ProxyError> {
        let ca = Arc::new(LocalCa::load_or_create(&config.data_dir)?);
        let resolve = ResolveMap::parse(&config.resolve)?;
        let tls = crate::tls::upstream_client_config(&config.upstream_ca)?;
        let tcp = TcpConnector::new(resolve, config.connect_timeout);
        let client = upstream::client(tls.clone(), tcp.clone(), false);
        let intercept_client = upstream::client(tls.clone(), tcp.clone(), true);
        let upgrade_client = upstream::upgrade_client(tls, tcp.clone());

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })
        };
        let proxy_listener = bind(config.listen).await?;
        let admin_listener = bind(config.admin).await?;
        let local = |l: &TcpListener, addr| {
            l.local_addr()
                .map_err(|source| ProxyError::Bind { addr, source })
        };
        let proxy_addr = local(&proxy_listener, config.listen)?;
        let admin_addr = local(&admin_listener, config.admin)?;

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ready = Arc::new(AtomicBool::new(false));
        let ca_path = ca.path().to_path_buf();
        let admin = crate::admin::AdminState {
            ready: ready.clone(),
            stopping: shutdown.clone(),
            ca_pem: ca.cert_pem().to_string(),
            gate: gate.clone(),
            proxy_addr,
        };
        let drain_timeout = config.drain_timeout;
        let shared = Arc::new(Shared {
            gate,
            leaves: LeafCache::new(ca, config.leaf_cache_size),
            client,
            intercept_client,
            upgrade_client,
            tcp,
            config,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        });
        tracker.spawn(listener::accept_loop(shared, proxy_listener));
        // The admin listener is not tracked: it answers health checks during the drain and stops
        // with the process.
        let admin_stop = CancellationToken::new();
        tokio::spawn(crate::admin::serve(
            admin,
            admin_listener,
            admin_stop.clone(),
        ));
        // Listener bound, CA loaded, gate constructed: ready.
        ready.store(true, Ordering::SeqCst);
        Ok(Self {
            proxy_addr,
            admin_addr,
            ca_path,
            shutdown,
            admin_stop,
            ready,
            tracker,
            drain_timeout,
        })
    }

    /// A token that stops the proxy when cancelled (what a signal handler holds).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, then returns.
    pub async fn stop(self) -> Drained {
        // Not ready any more (a load balancer stops sending), still healthy while draining.
        self.ready.store(false, Ordering::SeqCst);
        self.shutdown.cancel();
        self.tracker.close();
        let drained = match tokio::time::timeout(self.drain_timeout, self.tracker.wait()).await {
            Ok(()) => Drained::Clean,
            Err(_) => Drained::TimedOut,
        };
        self.admin_stop.cancel();
        drained
    }

    /// Waits until the shutdown token is cancelled (by a signal handler or an embedding
    /// program), then stops.
    pub async fn run_until_stopped(self) -> Drained {
        self.shutdown.cancelled().await;
        self.stop().await
    }
}
