//! The connections: `getpeerinfo` and `getconnectioncount`.

use bitcoin::p2p::ServiceFlags;

use peerpool_net::pool::{ConnKind, PeerDetails};
use peerpool_net::Direction;
use serde::Serialize;
use serde_json::{json, Value};

use super::{handler, network_name, to_text, Call, Method, Output};
use crate::error::RpcError;

pub(super) static GETPEERINFO: Method = Method {
    name: "getpeerinfo",
    category: "Network",
    args: &[],
    usage: "getpeerinfo",
    help: "Lists every connection with its statistics, one object per peer.\n\n\
Times are seconds since the UNIX epoch; ping times are in seconds, with decimals, and left\n\
out while unknown. Fields, in Bitcoin Core 31's order with the older ones clients still read\n\
(addnode, startingheight, banscore, whitelisted) where older releases had them: id, addr,\n\
addrbind, addrlocal, network, mapped_as (with an asmap), services (hex), servicesnames,\n\
relaytxes, lastsend, lastrecv, last_transaction, last_block, bytessent, bytesrecv, conntime,\n\
timeoffset, pingtime, minping, pingwait, version, subver, inbound, bip152_hb_to,\n\
bip152_hb_from, addnode, startingheight, presynced_headers, banscore, synced_headers,\n\
synced_blocks, inflight, whitelisted, addr_relay_enabled, addr_processed, addr_rate_limited,\n\
permissions, minfeefilter, bytessent_per_msg, bytesrecv_per_msg, inv_to_send,\n\
last_inv_sequence, connection_type, transport_protocol_type, session_id.\n",
    handler: handler!(getpeerinfo),
};

async fn getpeerinfo(c: Call<'_>) -> Result<Output, RpcError> {
    let details = c.pool().peer_details().await?;
    let rows: Vec<PeerRow<'_>> = details.iter().filter_map(PeerRow::of).collect();
    to_text(&rows).map(Output::Text).map_err(RpcError::internal)
}

pub(super) static GETCONNECTIONCOUNT: Method = Method {
    name: "getconnectioncount",
    category: "Network",
    args: &[],
    usage: "getconnectioncount",
    help: "The number of connections.\n\nResult: n (numeric)\n",
    handler: handler!(getconnectioncount),
};

async fn getconnectioncount(c: Call<'_>) -> Result<Value, RpcError> {
    let counts = c.pool().query(|v| v.connection_counts()).await?;
    Ok(json!(counts.total()))
}

/// Bitcoin Core's names of service bits (`GetServicesNames`); unknown bits as `UNKNOWN[2^n]`.
pub(super) fn service_names(services: ServiceFlags) -> Vec<String> {
    let bits = services.to_u64();
    (0..64)
        .filter(|i| bits & (1u64 << i) != 0)
        .map(|i| match 1u64 << i {
            1 => "NETWORK".to_owned(),
            2 => "GETUTXO".to_owned(),
            4 => "BLOOM".to_owned(),
            8 => "WITNESS".to_owned(),
            64 => "COMPACT_FILTERS".to_owned(),
            1024 => "NETWORK_LIMITED".to_owned(),
            2048 => "P2P_V2".to_owned(),
            _ => format!("UNKNOWN[2^{i}]"),
        })
        .collect()
}

fn secs(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// Bytes per message kind, as a JSON object.
struct PerMsg<'a>(&'a [(peerpool_wire::MessageKind, u64)]);

impl Serialize for PerMsg<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, b)| (k.as_str(), b)))
    }
}

/// One `getpeerinfo` entry: Bitcoin Core 31's fields in its order, with the older ones (the
/// PeerInfoModel clients still read: `addnode`, `banscore`, `whitelisted`, `startingheight`)
/// where the releases that had them put them. Every field is present for every connection,
/// from its first moment (Core's functional tests read them before the peer's `version`),
/// except those Core also leaves out while unknown.
#[derive(Serialize)]
struct PeerRow<'a> {
    id: u64,
    addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    addrbind: Option<String>,
    /// Our address as the peer reported it in its `version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    addrlocal: Option<String>,
    network: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mapped_as: Option<u32>,
    services: String,
    servicesnames: Vec<String>,
    relaytxes: bool,
    lastsend: u64,
    lastrecv: u64,
    last_transaction: u64,
    last_block: u64,
    bytessent: u64,
    bytesrecv: u64,
    conntime: u64,
    timeoffset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pingtime: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minping: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pingwait: Option<f64>,
    version: u32,
    subver: &'a str,
    inbound: bool,
    bip152_hb_to: bool,
    bip152_hb_from: bool,
    addnode: bool,
    startingheight: i32,
    presynced_headers: i64,
    banscore: u32,
    synced_headers: i64,
    synced_blocks: i64,
    inflight: [u64; 0],
    whitelisted: bool,
    addr_relay_enabled: bool,
    addr_processed: u32,
    addr_rate_limited: u32,
    permissions: Vec<&'static str>,
    minfeefilter: f64,
    bytessent_per_msg: PerMsg<'a>,
    bytesrecv_per_msg: PerMsg<'a>,
    inv_to_send: usize,
    last_inv_sequence: u64,
    connection_type: &'static str,
    transport_protocol_type: &'static str,
    session_id: &'static str,
}

impl<'a> PeerRow<'a> {
    /// The entry of `d`; `None` for a connection that never started.
    fn of(d: &'a PeerDetails) -> Option<PeerRow<'a>> {
        let s = d.stats.as_ref()?;
        let local = s.local_addr.map(|a| a.to_string());
        // Nothing of the peer's own is known before its `version`: Core's -1.
        let got_version = s.their_version != 0;
        Some(PeerRow {
            id: d.id.0,
            addr: d.addr.to_string(),
            addrbind: local,
            addrlocal: s.addr_local_reported.map(|a| a.to_string()),
            network: network_name(&d.addr),
            mapped_as: d.mapped_as,
            services: format!("{:016x}", s.services.to_u64()),
            servicesnames: service_names(s.services),
            relaytxes: s.relay,
            lastsend: s.last_send.map_or(0, |t| t.as_secs()),
            lastrecv: s.last_recv.map_or(0, |t| t.as_secs()),
            // peerpool relays no blocks or transactions: none ever received.
            last_transaction: 0,
            last_block: 0,
            bytessent: s.bytes_sent,
            bytesrecv: s.bytes_recv,
            conntime: s.conn_time.as_secs(),
            timeoffset: s.time_offset,
            pingtime: s.ping.last_rtt_micros.map(secs),
            minping: s.ping.min_rtt_micros.map(secs),
            pingwait: s.ping.wait_micros.map(secs),
            version: s.their_version,
            subver: &s.user_agent,
            inbound: d.direction == Direction::Inbound,
            bip152_hb_to: false,
            bip152_hb_from: false,
            // The manual-connection flag of every Core that had it: `addnode add`, `onetry`
            // and `-connect` peers alike.
            addnode: matches!(d.kind, ConnKind::Manual | ConnKind::OneTry),
            startingheight: if got_version { s.starting_height } else { -1 },
            // No header or block sync in peerpool: Core's "unknown".
            presynced_headers: -1,
            banscore: s.ban_score,
            synced_headers: -1,
            synced_blocks: -1,
            inflight: [],
            whitelisted: !d.permissions.is_empty(),
            addr_relay_enabled: d.kind != ConnKind::Feeler,
            addr_processed: d.addr_processed,
            addr_rate_limited: d.addr_rate_limited,
            permissions: d.permissions.iter().map(|p| p.as_str()).collect(),
            // BIP133 fee filters are in sat/kvB; Core shows BTC/kvB.
            minfeefilter: s.fee_filter.unwrap_or(0) as f64 / 100_000_000.0,
            bytessent_per_msg: PerMsg(&s.bytes_sent_per_msg),
            bytesrecv_per_msg: PerMsg(&s.bytes_recv_per_msg),
            inv_to_send: s.inv_to_send,
            // A mempool sequence number; peerpool keeps no mempool.
            last_inv_sequence: 0,
            connection_type: d.kind.as_str(),
            transport_protocol_type: "v1",
            session_id: "",
        })
    }
}
