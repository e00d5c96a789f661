//! The pool's event bus as a stream of JSON-RPC notifications.
