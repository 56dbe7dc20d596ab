//! Acting on a decision: redact, pseudonymize (and restore in the response), block responses.

pub mod reply;
