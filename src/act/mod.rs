//! Acting on a decision: redact, pseudonymize (and restore in the response), block responses.
//!
//! Every function here rewrites exactly the bytes it is given ranges for and nothing else; none
//! of them logs a value.

pub mod pseudonymize;
pub mod redact;
pub mod reply;
