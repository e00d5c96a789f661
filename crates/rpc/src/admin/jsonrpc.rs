//! JSON-RPC 2.0 as the admin listener speaks it: one request, response or notification per
//! line, named (`{"session_ids": [...]}`) or positional parameters, batches as arrays.
//! Errors are [`RpcError`]s with JSON-RPC 2.0's codes (see [`crate::error`]).

use serde_json::{json, Map, Value};

use crate::error::{RpcError, INVALID_REQUEST};

/// One request read from a line.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The method.
    pub method: String,
    /// Its parameters: an object, an array, or `Null` when absent.
    pub params: Value,
    /// The request id; `None` for a notification, which gets no answer.
    pub id: Option<Value>,
}

impl Request {
    /// Checks one element of a line (a whole line, or one member of a batch). `Err` carries
    /// the error answer, with the request's id when one could be read.
    pub fn from_value(v: Value) -> Result<Request, Value> {
        let Value::Object(mut obj) = v else {
            return Err(error_response(
                Value::Null,
                &RpcError::new(INVALID_REQUEST, "a request must be a JSON object"),
            ));
        };
        let id = match obj.remove("id") {
            None => None,
            Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(id),
            Some(other) => {
                return Err(error_response(
                    Value::Null,
                    &RpcError::new(INVALID_REQUEST, format!("invalid id: {other}")),
                ))
            }
        };
        let fail = |message: String| {
            Err(error_response(
                id.clone().unwrap_or(Value::Null),
                &RpcError::new(INVALID_REQUEST, message),
            ))
        };
        match obj.get("jsonrpc") {
            None => {}
            Some(Value::String(v)) if v == "2.0" => {}
            Some(other) => return fail(format!("\"jsonrpc\" must be \"2.0\", not {other}")),
        }
        let method = match obj.remove("method") {
            Some(Value::String(m)) => m,
            Some(other) => return fail(format!("\"method\" must be a string, not {other}")),
            None => return fail("request has no \"method\"".into()),
        };
        let params = match obj.remove("params") {
            None | Some(Value::Null) => Value::Null,
            Some(p @ (Value::Object(_) | Value::Array(_))) => p,
            Some(other) => {
                return fail(format!(
                    "\"params\" must be an object or an array, not {other}"
                ))
            }
        };
        Ok(Request { method, params, id })
    }

    /// The parameter `name`, given by name or at `position`.
    pub fn param(&self, name: &str, position: usize) -> Option<&Value> {
        match &self.params {
            Value::Object(map) => map.get(name),
            Value::Array(list) => list.get(position),
            _ => None,
        }
    }

    /// The parameters as an object; positional ones under `names`, in order. `Err` for
    /// positional parameters beyond `names`.
    pub fn named(&self, names: &[&str]) -> Result<Map<String, Value>, RpcError> {
        match &self.params {
            Value::Object(map) => Ok(map.clone()),
            Value::Array(list) if list.len() > names.len() => {
                Err(RpcError::invalid_params(format!(
                    "{} takes at most {} parameter(s), got {}",
                    self.method,
                    names.len(),
                    list.len()
                )))
            }
            Value::Array(list) => Ok(names
                .iter()
                .zip(list)
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect()),
            _ => Ok(Map::new()),
        }
    }
}

/// A success answer.
pub fn response(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "result": result, "id": id})
}

/// An error answer.
pub fn error_response(id: Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "error": error.to_json(), "id": id})
}

/// A notification (a message with no id, expecting no answer).
pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::INVALID_PARAMS;

    #[test]
    fn requests_are_checked_member_by_member() {
        let r = Request::from_value(json!({"jsonrpc": "2.0", "method": "log", "id": 3,
            "params": {"session_ids": ["1"]}}))
        .unwrap();
        assert_eq!(r.method, "log");
        assert_eq!(r.id, Some(json!(3)));
        assert_eq!(r.param("session_ids", 0), Some(&json!(["1"])));

        let e = Request::from_value(json!({"method": 5, "id": "a"})).unwrap_err();
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
        assert_eq!(e["id"], "a");
        let e = Request::from_value(json!([1])).unwrap_err();
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
        let e = Request::from_value(json!({"method": "x", "params": 7, "id": 1})).unwrap_err();
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
        let e = Request::from_value(json!({"method": "x", "id": [1]})).unwrap_err();
        assert_eq!(e["id"], Value::Null);
        let e = Request::from_value(json!({"jsonrpc": "1.0", "method": "x", "id": 1})).unwrap_err();
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn positional_parameters_take_their_names() {
        let r =
            Request::from_value(json!({"method": "connect", "params": ["1.2.3.4:8333"]})).unwrap();
        assert_eq!(r.id, None, "a notification");
        let named = r.named(&["addr"]).unwrap();
        assert_eq!(named["addr"], "1.2.3.4:8333");
        assert_eq!(r.named(&[]).unwrap_err().code, INVALID_PARAMS);
    }
}
