//! egress-guard: a data-egress guard for AI coding agents.
//!
//! The modules mirror the path a request takes through the proxy:
//!
//! ```text
//! proxy (accept -> connect/intercept) -> inspect (decode, read the provider's API)
//!   -> detect (find secrets, PII, customer data) -> policy (decide) -> act (redact, pseudonymize,
//!   block) -> audit (record before it leaves) -> proxy (forward, stream the response back)
//! ```
//!
//! `tls` holds the local CA and upstream trust; `admin` the operator-facing listener.
#![deny(unsafe_code)]

pub mod act;
pub mod admin;
pub mod audit;
pub mod detect;
pub mod inspect;
pub mod policy;
pub mod proxy;
pub mod tls;
