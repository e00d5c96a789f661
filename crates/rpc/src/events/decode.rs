//! Received messages as JSON, for `peer_message` notifications.
//!
//! Common kinds are decoded into their fields: `version`, `inv`/`getdata`/`notfound` (typed
//! hashes), `addr`/`addrv2`, `ping`/`pong`, `headers` (count and hashes), `feefilter`,
//! `sendcmpct`, `reject`; transactions and blocks are summarized by id and size. Any other
//! kind is given as its payload in hex.

use bitcoin::consensus::encode::serialize;
use bitcoin::p2p::address::AddrV2;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use peerpool_core::addr::NetAddr;
use serde_json::{json, Value};

/// The JSON form of `msg` (see the module docs).
pub fn message_json(msg: &NetworkMessage) -> Value {
    match msg {
        NetworkMessage::Version(v) => json!({
            "version": v.version,
            "services": v.services.to_u64(),
            "timestamp": v.timestamp,
            "receiver": address_text(&v.receiver),
            "sender": address_text(&v.sender),
            "nonce": v.nonce,
            "user_agent": v.user_agent,
            "start_height": v.start_height,
            "relay": v.relay,
        }),
        NetworkMessage::Inv(list)
        | NetworkMessage::GetData(list)
        | NetworkMessage::NotFound(list) => {
            json!({"count": list.len(), "inventory": list.iter().map(inventory_json).collect::<Vec<_>>()})
        }
        NetworkMessage::Addr(list) => json!({
            "count": list.len(),
            "addresses": list.iter().map(|(time, a)| json!({
                "time": time,
                "services": a.services.to_u64(),
                "address": address_text(a),
            })).collect::<Vec<_>>(),
        }),
        NetworkMessage::AddrV2(list) => json!({
            "count": list.len(),
            "addresses": list.iter().map(|a| json!({
                "time": a.time,
                "services": a.services.to_u64(),
                "address": addrv2_text(&a.addr, a.port),
            })).collect::<Vec<_>>(),
        }),
        NetworkMessage::Ping(nonce) | NetworkMessage::Pong(nonce) => json!({"nonce": nonce}),
        NetworkMessage::Headers(headers) => json!({
            "count": headers.len(),
            "hashes": headers.iter().map(|h| h.block_hash().to_string()).collect::<Vec<_>>(),
        }),
        NetworkMessage::FeeFilter(rate) => json!({"feerate": rate}),
        NetworkMessage::SendCmpct(s) => json!({"announce": s.send_compact, "version": s.version}),
        NetworkMessage::Reject(r) => json!({
            "message": r.message.to_string(),
            "code": format!("{:?}", r.ccode).to_lowercase(),
            "reason": r.reason.to_string(),
            "hash": hex::encode(r.hash.as_ref() as &[u8]),
        }),
        NetworkMessage::Tx(tx) => json!({
            "txid": tx.compute_txid().to_string(),
            "wtxid": tx.compute_wtxid().to_string(),
            "size": tx.total_size(),
            "inputs": tx.input.len(),
            "outputs": tx.output.len(),
        }),
        NetworkMessage::Block(block) => json!({
            "hash": block.block_hash().to_string(),
            "prev": block.header.prev_blockhash.to_string(),
            "txs": block.txdata.len(),
        }),
        NetworkMessage::Unknown { payload, .. } => json!({"payload": hex::encode(payload)}),
        other => json!({"payload": hex::encode(peerpool_wire::message::encode_payload(other))}),
    }
}

/// The size of `msg`'s payload on the wire.
pub fn payload_size(msg: &NetworkMessage) -> usize {
    match msg {
        NetworkMessage::Unknown { payload, .. } => payload.len(),
        NetworkMessage::Tx(tx) => serialize(tx).len(),
        other => peerpool_wire::message::encode_payload(other).len(),
    }
}

fn inventory_json(inv: &Inventory) -> Value {
    let (kind, hash) = match inv {
        Inventory::Error => ("error", String::new()),
        Inventory::Transaction(t) => ("tx", t.to_string()),
        Inventory::Block(b) => ("block", b.to_string()),
        Inventory::CompactBlock(b) => ("cmpctblock", b.to_string()),
        Inventory::WTx(w) => ("wtx", w.to_string()),
        Inventory::WitnessTransaction(t) => ("witness_tx", t.to_string()),
        Inventory::WitnessBlock(b) => ("witness_block", b.to_string()),
        Inventory::Unknown { inv_type, hash } => {
            return json!({"type": inv_type, "hash": hex::encode(hash)});
        }
    };
    json!({"type": kind, "hash": hash})
}

fn address_text(a: &bitcoin::p2p::address::Address) -> String {
    match a.socket_addr() {
        Ok(sa) => sa.to_string(),
        Err(_) => format!("{:?}:{}", a.address, a.port),
    }
}

fn addrv2_text(a: &AddrV2, port: u16) -> String {
    match NetAddr::from_addrv2(a, port) {
        Some(n) => n.to_string(),
        None => format!("{a:?}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    #[test]
    fn common_kinds_are_decoded_and_others_are_hex() {
        let txid = bitcoin::Txid::from_byte_array([1; 32]);
        let inv = message_json(&NetworkMessage::Inv(vec![Inventory::Transaction(txid)]));
        assert_eq!(inv["count"], 1);
        assert_eq!(inv["inventory"][0]["type"], "tx");
        assert_eq!(inv["inventory"][0]["hash"], txid.to_string());
        assert_eq!(message_json(&NetworkMessage::Ping(7))["nonce"], 7);
        assert_eq!(
            message_json(&NetworkMessage::FeeFilter(1000))["feerate"],
            1000
        );
        let unknown = NetworkMessage::Unknown {
            command: bitcoin::p2p::message::CommandString::try_from_static("foo").unwrap(),
            payload: vec![0xab, 0xcd],
        };
        assert_eq!(message_json(&unknown)["payload"], "abcd");
        assert_eq!(payload_size(&unknown), 2);
        assert_eq!(message_json(&NetworkMessage::Verack)["payload"], "");
        assert_eq!(payload_size(&NetworkMessage::Ping(1)), 8);
    }
}
