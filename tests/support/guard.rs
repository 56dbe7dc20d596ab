//! Runs the real `egress-guard` binary for a test. (Filled in by the proxy core.)
