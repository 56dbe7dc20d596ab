//! The policy engine: what may leave, decided top-down like a firewall.
//!
//! `model` is the TOML as written, `loader` reads and validates it (errors name file:line:col),
//! `evaluate` matches rules, `gate` runs the whole path for one request (decode -> read ->
//! detect -> decide -> act -> audit), `reload` swaps in a new policy when its files change.
//! Nothing here ever logs or stores a detected value.

pub mod client;
pub mod decision;
pub mod evaluate;
pub mod gate;
pub mod loader;
pub mod model;
pub mod reload;
pub mod scan_cache;
pub mod websocket;

use crate::detect::{Finding, Scanner};

/// Anything that finds values in bytes: the real [`Scanner`], or a small fake in tests.
pub trait Detect: Send + Sync + 'static {
    /// Every finding in `input`, spans into `input`.
    fn scan(&self, input: &[u8]) -> Vec<Finding>;
}

impl Detect for Scanner {
    fn scan(&self, input: &[u8]) -> Vec<Finding> {
        Scanner::scan(self, input)
    }
}

pub use gate::PolicyGate;
