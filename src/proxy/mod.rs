//! The forward proxy: accept -> connect/intercept -> forward.
//!
//! Every intercepted request passes through one [`gate::Gate`] before a byte of it leaves; the
//! proxy itself never decides what is allowed.

pub mod gate;
