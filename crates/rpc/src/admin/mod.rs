//! ElectrumX-style admin RPC: one JSON-RPC 2.0 object per line over TCP.
