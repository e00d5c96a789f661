//! Bitcoin Core-compatible JSON-RPC over HTTP.
