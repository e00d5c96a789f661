//! [`RpcError`]: the one error of every listener (node RPC, admin, event stream), and the one
//! table of error codes they answer with.
//!
//! The codes are Bitcoin Core's `RPCErrorCode` (src/rpc/protocol.h), of which the five from
//! -32700 to -32603 are JSON-RPC 2.0's own: the node RPC answers as Core does, and the admin
//! listener, which speaks plain JSON-RPC 2.0, uses those five. Only the codes peerpool
//! returns are here.

use serde_json::{json, Value};

/// An error as a JSON-RPC reply carries it: a code from this module's table and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// The code; see the constants of this module.
    pub code: i32,
    /// What went wrong, for a person.
    pub message: String,
}

/// The request is not valid JSON. JSON-RPC 2.0; Bitcoin Core: `RPC_PARSE_ERROR`.
pub const PARSE_ERROR: i32 = -32700;
/// Valid JSON, but not a request object. JSON-RPC 2.0; Bitcoin Core: `RPC_INVALID_REQUEST`.
pub const INVALID_REQUEST: i32 = -32600;
/// No such method. JSON-RPC 2.0; Bitcoin Core: `RPC_METHOD_NOT_FOUND`.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// The parameters do not fit the method. JSON-RPC 2.0; Bitcoin Core: `RPC_INVALID_PARAMS`.
pub const INVALID_PARAMS: i32 = -32602;
/// The server failed to carry out a valid request (the pool has stopped, say). JSON-RPC 2.0;
/// Bitcoin Core: `RPC_INTERNAL_ERROR`.
pub const INTERNAL_ERROR: i32 = -32603;
/// Anything else, and wrong argument counts (with the method's help as the message).
/// Bitcoin Core: `RPC_MISC_ERROR`.
pub const MISC_ERROR: i32 = -1;
/// An argument of the wrong JSON type. Bitcoin Core: `RPC_TYPE_ERROR`.
pub const TYPE_ERROR: i32 = -3;
/// An argument out of range or malformed. Bitcoin Core: `RPC_INVALID_PARAMETER`.
pub const INVALID_PARAMETER: i32 = -8;
/// `addnode add` of a node already added; `setban add` of a subnet already banned.
/// Bitcoin Core: `RPC_CLIENT_NODE_ALREADY_ADDED`.
pub const NODE_ALREADY_ADDED: i32 = -23;
/// `addnode remove` or `getaddednodeinfo` of a node never added.
/// Bitcoin Core: `RPC_CLIENT_NODE_NOT_ADDED`.
pub const NODE_NOT_ADDED: i32 = -24;
/// `disconnectnode` of no connected peer. Bitcoin Core: `RPC_CLIENT_NODE_NOT_CONNECTED`.
pub const NODE_NOT_CONNECTED: i32 = -29;
/// A malformed IP or subnet. Bitcoin Core: `RPC_CLIENT_INVALID_IP_OR_SUBNET`.
pub const INVALID_IP_OR_SUBNET: i32 = -30;

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// [`INVALID_PARAMS`], JSON-RPC 2.0's answer to parameters that do not fit.
    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMS, message)
    }

    /// [`INVALID_PARAMETER`], Bitcoin Core's answer to an argument out of range or malformed.
    pub fn invalid_parameter(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMETER, message)
    }

    /// [`INTERNAL_ERROR`] saying what failed.
    pub fn internal(cause: impl std::fmt::Display) -> RpcError {
        RpcError::new(INTERNAL_ERROR, cause.to_string())
    }

    /// A wrong JSON type, worded as Bitcoin Core does.
    pub fn type_error(got: &Value, expected: &str) -> RpcError {
        RpcError::new(
            TYPE_ERROR,
            format!(
                "JSON value of type {} is not of expected type {expected}",
                json_type(got)
            ),
        )
    }

    /// The `error` member of a reply.
    pub fn to_json(&self) -> Value {
        json!({ "code": self.code, "message": self.message })
    }
}

/// The JSON type name Bitcoin Core's messages use.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A pool's refusal in Bitcoin Core's codes and words, as the node RPC answers it. The admin
/// listener does not use this: every pool failure is an [`RpcError::internal`] there.
impl From<peerpool_net::pool::PoolError> for RpcError {
    fn from(e: peerpool_net::pool::PoolError) -> RpcError {
        use peerpool_net::pool::{ConnError, PoolError};
        match e {
            PoolError::Conn(ConnError::AlreadyAdded(_)) => {
                RpcError::new(NODE_ALREADY_ADDED, "Error: Node already added")
            }
            PoolError::Conn(ConnError::NotAdded(_)) => RpcError::new(
                NODE_NOT_ADDED,
                "Error: Node could not be removed. It has not been added previously.",
            ),
            PoolError::Conn(ConnError::NotConnected) => {
                RpcError::new(NODE_NOT_CONNECTED, "Node not found in connected nodes")
            }
            other => RpcError::new(MISC_ERROR, other.to_string()),
        }
    }
}
