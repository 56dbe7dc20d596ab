//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/proxy.pac`, `/ca.pem`.
