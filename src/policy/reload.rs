//! Live reload: when the policy directory's files change (polled mtimes) or on SIGHUP, the
//! policy is loaded again and swapped in atomically. A broken policy never replaces a working
//! one: the error (file:line:col) is logged and the old policy keeps deciding.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, Opts};

use super::gate::PolicyGate;
use super::loader::{load_dir, PolicyError, ScannerFactory};

/// `egress_guard_policy_reloads_total{result="ok"|"error"}`; the admin registry registers it.
pub fn reload_counter() -> &'static IntCounterVec {
    static COUNTER: OnceLock<IntCounterVec> = OnceLock::new();
    COUNTER.get_or_init(|| {
        let counter = IntCounterVec::new(
            Opts::new(
                "egress_guard_policy_reloads_total",
                "Policy reloads, by result (ok: swapped in; error: refused, old policy kept)",
            ),
            &["result"],
        )
        .expect("static metric definition is valid");
        for result in ["ok", "error"] {
            counter.with_label_values(&[result]);
        }
        // Registered once, here, so `/metrics` shows it from the first reload on.
        let _ = crate::admin::metrics::metrics()
            .registry
            .register(Box::new(counter.clone()));
        counter
    })
}

/// Loads `dir` again and, if it is valid, puts it in force. Returns the error otherwise (the
/// gate keeps its current policy).
pub fn reload(gate: &PolicyGate, dir: &Path, scanners: &ScannerFactory) -> Result<(), PolicyError> {
    match load_dir(dir, scanners) {
        Ok(policy) => {
            let (name, digest) = (policy.policy.name.clone(), policy.digest.clone());
            // In force before it is announced: whoever reads "policy reloaded" (an operator,
            // a test) and sends a request gets the new policy.
            gate.replace(policy);
            tracing::info!(policy = %name, digest = %digest, "policy reloaded");
            reload_counter().with_label_values(&["ok"]).inc();
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "policy reload refused; the previous policy stays in force");
            reload_counter().with_label_values(&["error"]).inc();
            Err(e)
        }
    }
}

/// The files a policy directory is made of, with their modification times and sizes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut files = Vec::new();
    let mut visit = |d: &Path| {
        if let Ok(entries) = std::fs::read_dir(d) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|x| x == "toml") {
                    let meta = entry.metadata().ok();
                    files.push((
                        path,
                        meta.as_ref().and_then(|m| m.modified().ok()),
                        meta.map_or(0, |m| m.len()),
                    ));
                }
            }
        }
    };
    visit(dir);
    visit(&dir.join("rules"));
    visit(&dir.join("tests"));
    files.sort();
    files
}

/// Watches `dir` for changes (every `interval`) and for SIGHUP (on Unix, when called inside a
/// tokio runtime), reloading into `gate`. Stops when the gate is dropped.
pub fn watch(
    gate: &Arc<PolicyGate>,
    dir: PathBuf,
    scanners: Arc<ScannerFactory>,
    interval: Duration,
) {
    reload_counter();
    let weak: Weak<PolicyGate> = Arc::downgrade(gate);
    {
        let weak = weak.clone();
        let dir = dir.clone();
        let scanners = scanners.clone();
        let spawned = std::thread::Builder::new()
            .name("policy-watch".into())
            .spawn(move || {
                let mut last = snapshot(&dir);
                loop {
                    std::thread::sleep(interval);
                    let Some(gate) = weak.upgrade() else { return };
                    let now = snapshot(&dir);
                    if now != last {
                        last = now;
                        let _ = reload(&gate, &dir, scanners.as_ref());
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot watch the policy directory; reload with SIGHUP");
        }
    }
    #[cfg(unix)]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                return;
            };
            while hangups.recv().await.is_some() {
                let Some(gate) = weak.upgrade() else { return };
                let _ = reload(&gate, &dir, scanners.as_ref());
            }
        });
    }
}
