//! Shared test support: a real fake upstream (TLS, Anthropic/OpenAI/Gemini shapes, JSON and SSE)
//! and a harness that runs the real `egress-guard` binary against it. Every test file that
//! needs them says `mod support;`.
#![allow(dead_code)]

pub mod guard;
pub mod policies;
pub mod upstream;
