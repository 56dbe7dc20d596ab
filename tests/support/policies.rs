//! Policies that more than one test file needs, written once. Kept apart from the rest of
//! `support` so that a file testing the gate in-process can include just these
//! (`#[path = "support/policies.rs"] mod policies;`) without the fake upstream.

/// A policy that inspects the AI hosts and refuses WebSocket upgrades to them.
pub const REFUSE_WEBSOCKETS: &str = r#"
    name = "no-websockets"
    [settings]
    websocket = "refuse"
    [[destination]]
    hosts = ["@ai"]
    route = "inspect"
"#;
