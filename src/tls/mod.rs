//! TLS: the local name-constrained CA, per-host leaf minting and caching, upstream trust.
