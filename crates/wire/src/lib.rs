//! # peerpool-wire
//!
//! The bytes of the Bitcoin P2P protocol, and nothing else: no sockets, no clocks, no tasks.
//!
//! - [`frame`]: the 24-byte message header and a streaming frame decoder that rejects a wrong
//!   network magic, a payload length over [`frame::MAX_PAYLOAD_LEN`] and a bad checksum before a
//!   payload is allocated or decoded.
//! - [`message`]: a thin layer over the [`bitcoin::p2p`] message types: decode a payload by its
//!   command (tolerant where Bitcoin Core is tolerant), encode a message straight into a frame,
//!   and [`message::MessageKind`], the closed set of commands this crate knows.
//! - [`feature`]: BIP434 `feature` messages, checked to the BIP's bounds.
//! - [`chain`]: chain parameters for Bitcoin's networks and any other Bitcoin-family chain loaded
//!   from a TOML file.
//!
//! Start reading at [`frame::FrameDecoder`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
pub mod checksum;
pub mod feature;
pub mod frame;
pub mod message;

pub use bitcoin::p2p::message::NetworkMessage;
pub use bitcoin::p2p::{Magic, ServiceFlags};
pub use chain::{ChainParams, Network};
pub use frame::{Command, Frame, FrameDecoder, FrameError, Header};
pub use message::{DecodeError, MessageKind};
