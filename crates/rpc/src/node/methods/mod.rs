//! The methods: Bitcoin Core's names, parameters and result shapes, each over the pool's
//! [`PoolHandle`](peerpool_net::pool::PoolHandle).
//!
//! A method is one [`Method`]: its name, parameters, help and handler together, kept in the
//! module of its job ([`peers`], [`manual`], [`bans`], [`addrman`], [`network`], [`control`]).
//! [`METHODS`] puts them in `help`'s order; [`call`] finds a method there, turns the request's
//! parameters into positional arguments and runs the handler.

mod addrman;
mod bans;
mod control;
mod manual;
mod network;
mod peers;

use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use peerpool_net::pool::PoolHandle;
use serde_json::Value;

use super::Context;
use crate::error::{self, RpcError};

/// One parameter of a method.
struct Arg {
    name: &'static str,
    required: bool,
}

const fn req(name: &'static str) -> Arg {
    Arg {
        name,
        required: true,
    }
}

const fn opt(name: &'static str) -> Arg {
    Arg {
        name,
        required: false,
    }
}

/// What a handler's future gives back.
type Reply<'a> = Pin<Box<dyn Future<Output = Result<Output, RpcError>> + Send + 'a>>;

/// Runs one call of a method; make one with [`handler!`].
type Handler = for<'a> fn(Call<'a>) -> Reply<'a>;

/// The [`Handler`] of an `async fn(Call<'_>) -> Result<T, RpcError>`, where `T` is a
/// [`Value`] or an [`Output`].
macro_rules! handler {
    ($f:path) => {{
        fn run(call: $crate::node::methods::Call<'_>) -> $crate::node::methods::Reply<'_> {
            Box::pin(async move { $f(call).await.map($crate::node::methods::Output::from) })
        }
        run
    }};
}
use handler;

/// A method: its signature, help and handler.
struct Method {
    name: &'static str,
    category: &'static str,
    args: &'static [Arg],
    /// The first help line: the call's shape.
    usage: &'static str,
    /// The rest of the help text.
    help: &'static str,
    handler: Handler,
}

impl Method {
    fn help_text(&self) -> String {
        format!("{}\n\n{}", self.usage, self.help.trim_end())
    }

    /// Bitcoin Core's answer to a call that does not fit the method: its help.
    fn usage_error(&self) -> RpcError {
        RpcError::new(error::MISC_ERROR, self.help_text())
    }
}

/// Every method, in `help`'s order. A method left out of this list is never called, and the
/// compiler says so.
static METHODS: &[&Method] = &[
    &peers::GETPEERINFO,
    &manual::ADDNODE,
    &manual::GETADDEDNODEINFO,
    &manual::DISCONNECTNODE,
    &peers::GETCONNECTIONCOUNT,
    &network::GETNETTOTALS,
    &network::GETNETWORKINFO,
    &network::PING,
    &bans::SETBAN,
    &bans::LISTBANNED,
    &bans::CLEARBANNED,
    &addrman::GETNODEADDRESSES,
    &addrman::ADDPEERADDRESS,
    &network::SETNETWORKACTIVE,
    &addrman::GETADDRMANINFO,
    &addrman::GETRAWADDRMAN,
    &control::UPTIME,
    &control::HELP,
    &control::STOP,
];

fn find(name: &str) -> Option<&'static Method> {
    METHODS.iter().copied().find(|m| m.name == name)
}

/// Whether `name` is a method (for metrics labels: unknown names are not recorded as such,
/// so a client cannot grow the label set).
pub(crate) fn exists(name: &str) -> bool {
    find(name).is_some()
}

/// Runs `method` with `params`.
pub(crate) async fn call(ctx: &Context, method: &str, params: Value) -> Result<Output, RpcError> {
    let m =
        find(method).ok_or_else(|| RpcError::new(error::METHOD_NOT_FOUND, "Method not found"))?;
    let args = positional(m, params)?;
    (m.handler)(Call {
        ctx,
        method: m,
        args,
    })
    .await
}

/// One call of a method: what it runs on, and its arguments made positional.
struct Call<'a> {
    ctx: &'a Context,
    method: &'static Method,
    args: Vec<Value>,
}

impl Call<'_> {
    fn pool(&self) -> &PoolHandle {
        &self.ctx.daemon.pool
    }

    fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i).filter(|v| !v.is_null())
    }

    fn str_arg(&self, i: usize) -> Result<Option<&str>, RpcError> {
        match self.arg(i) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(RpcError::type_error(v, "string")),
        }
    }

    fn int_arg(&self, i: usize) -> Result<Option<i64>, RpcError> {
        match self.arg(i) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| RpcError::type_error(v, "integer")),
            Some(v) => Err(RpcError::type_error(v, "number")),
        }
    }

    fn bool_arg(&self, i: usize) -> Result<Option<bool>, RpcError> {
        match self.arg(i) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(RpcError::type_error(v, "bool")),
        }
    }
}

/// Turns `params` (absent, positional or named) into positional arguments.
fn positional(m: &Method, params: Value) -> Result<Vec<Value>, RpcError> {
    let mut args = match params {
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        Value::Object(mut named) => {
            // Positional arguments may come along as "args" (bitcoin-cli -named with words
            // that have no '='); named ones fill the places after them, as Bitcoin Core.
            let leading = match named.remove("args") {
                Some(Value::Array(a)) => a,
                Some(other) => {
                    named.insert("args".to_owned(), other);
                    Vec::new()
                }
                None => Vec::new(),
            };
            let mut out = vec![Value::Null; m.args.len()];
            let mut first_named: Option<usize> = None;
            for (k, v) in named {
                let i = m.args.iter().position(|a| a.name == k).ok_or_else(|| {
                    RpcError::invalid_parameter(format!("Unknown named parameter {k}"))
                })?;
                first_named = Some(first_named.map_or(i, |f| f.min(i)));
                out[i] = v;
            }
            if let Some(f) = first_named.filter(|f| leading.len() > *f) {
                return Err(RpcError::invalid_parameter(format!(
                    "Parameter {} specified twice both as positional and named argument",
                    m.args[f].name
                )));
            }
            let mut all = leading;
            if all.len() < out.len() {
                all.extend(out.drain(all.len()..));
            }
            all
        }
        _ => {
            return Err(RpcError::new(
                error::INVALID_REQUEST,
                "Params must be an array or object",
            ))
        }
    };
    while args.last().is_some_and(Value::is_null) {
        args.pop();
    }
    let required = m.args.iter().filter(|a| a.required).count();
    if args.len() > m.args.len() || args.len() < required {
        // Bitcoin Core answers a wrong argument count with the method's help.
        return Err(m.usage_error());
    }
    Ok(args)
}

/// A method's result: a JSON value, or JSON text already written (`getpeerinfo`, whose
/// result for thousands of peers is serialized straight from the statistics rather than
/// through a tree of values).
pub(crate) enum Output {
    /// A value.
    Value(Value),
    /// Serialized JSON.
    Text(String),
}

impl Output {
    /// The result as JSON text.
    pub(crate) fn into_text(self) -> String {
        match self {
            // A tree of values always serializes.
            Output::Value(v) => to_text(&v).unwrap_or_else(|_| "null".to_owned()),
            Output::Text(t) => t,
        }
    }
}

impl From<Value> for Output {
    fn from(v: Value) -> Output {
        Output::Value(v)
    }
}

/// Writes decimals in plain notation (`0.00000097`, never `9.7e-7`): Bitcoin Core writes
/// amounts such as `minfeefilter` that way, and scripts compare them as text or read them
/// with decimal types that reject exponents.
struct PlainDecimals;

impl serde_json::ser::Formatter for PlainDecimals {
    fn write_f64<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        value: f64,
    ) -> std::io::Result<()> {
        // `Display` of a float never uses an exponent and round-trips.
        let text = value.to_string();
        w.write_all(text.as_bytes())?;
        if !text.contains('.') {
            w.write_all(b".0")?;
        }
        Ok(())
    }

    fn write_f32<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        value: f32,
    ) -> std::io::Result<()> {
        self.write_f64(w, f64::from(value))
    }
}

/// `value` as JSON text, decimals in plain notation (see [`PlainDecimals`]).
pub(crate) fn to_text<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PlainDecimals);
    value.serialize(&mut ser)?;
    // The serializer writes UTF-8 only.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Bitcoin Core's network name for an address (`GetNetworkName(GetNetClass())`): local and
/// private addresses are `not_publicly_routable`.
fn network_name(a: &peerpool_core::addr::NetAddr) -> &'static str {
    use peerpool_core::addr::Network;
    match a.network() {
        Network::Ipv4 | Network::Ipv6 if !a.is_routable() => "not_publicly_routable",
        n => n.as_str(),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_method_is_listed_once_and_its_usage_starts_with_its_name() {
        let mut names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        for m in METHODS {
            assert!(
                m.usage == m.name || m.usage.starts_with(&format!("{} ", m.name)),
                "{}: {}",
                m.name,
                m.usage
            );
            // Optional parameters come after the required ones, or positions would shift.
            let first_optional = m.args.iter().position(|a| !a.required);
            let rest = &m.args[first_optional.unwrap_or(m.args.len())..];
            assert!(rest.iter().all(|a| !a.required), "{}", m.name);
        }
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a name listed twice");
    }

    #[test]
    fn decimals_are_written_without_exponents_and_read_back_the_same() {
        let v = json!({
            "minfeefilter": 97.0 / 100_000_000.0,
            "fee": 0.000001,
            "zero": 0.0,
            "ping": 0.000089,
            "big": 1e21,
            "neg": -0.5,
            "int": 7,
            "list": [1e-7, 2.5],
        });
        let text = to_text(&v).unwrap();
        let exponent = text
            .as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_digit() && (w[1] == b'e' || w[1] == b'E'));
        assert!(!exponent, "{text}");
        assert!(text.contains("\"minfeefilter\":0.00000097"), "{text}");
        assert!(text.contains("\"fee\":0.000001"), "{text}");
        assert!(text.contains("\"zero\":0.0"), "{text}");
        assert!(text.contains("\"int\":7,"), "{text}");
        assert!(text.contains("[0.0000001,2.5]"), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
