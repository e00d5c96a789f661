//! The RPC client libraries people drive Bitcoin Core with, driving the daemon unchanged:
//! rust-bitcoin's `bitcoincore-rpc` and `corepc-client` (its client for Core 31) through their
//! typed methods, and npm's `bitcoin-core` under Node.js (installed under the target directory
//! on first use). python-bitcoinrpc has its own file, `rpc_python.rs`.
//!
//! Each library runs twice: against a daemon that answers requests that say
//! `"jsonrpc": "2.0"` as Core 28+ does (the default), and against one started with
//! `--rpc-strict-jsonrpc2=false`, which answers every request as Core before 28. The Rust libraries send `"jsonrpc": "2.0"` with every
//! request, so they meet both kinds of reply; `bitcoin-core` sends no `jsonrpc` member and gets
//! the older replies either way.
//!
//! Each run starts three daemons on loopback: the node the client drives (no automatic
//! connections, so that every connection is one the client asked for) and two peers for it
//! to connect to.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peerpool_testkit::daemon::{Binary, Daemon, RunArgs};
use peerpool_testkit::{eventually, npm, tempdir};

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));

/// The node's RPC credentials.
const USER: &str = "clientuser";
const PASSWORD: &str = "clientpass";

/// Bitcoin Core 31.0's `getnetworkinfo` version, which the daemon reports.
const CORE_VERSION: usize = 310_000;

/// How the daemon answers requests that say `"jsonrpc": "2.0"`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Replies {
    /// As Core before 28 (`--rpc-strict-jsonrpc2=false`): `result`, `error` and `id` in
    /// every reply.
    Legacy,
    /// As Core 28+ (the default): JSON-RPC 2.0 replies.
    Strict,
}

/// The node a client drives, and two daemons it can connect to.
struct Net {
    node: Daemon,
    /// Where the node's RPC server listens: `127.0.0.1:PORT`.
    rpc: String,
    /// The P2P addresses of the two other daemons.
    peers: [String; 2],
    _peers: [Daemon; 2],
    /// Just before the node started.
    started: Instant,
}

impl Net {
    fn start(name: &str, replies: Replies) -> Net {
        let daemon = |dir: &Path, extra: &[&str]| {
            let mut d = PEERPOOL.start(
                RunArgs::regtest(dir)
                    .listen("127.0.0.1:0")
                    .no_dnsseed()
                    .rpc_on_any_port()
                    .no_admin()
                    .args(["--target-outbound", "0"])
                    .args(extra.iter().copied()),
            );
            let p2p = d.listening(Duration::from_secs(20)).to_string();
            let rpc = d.rpc_addr(Duration::from_secs(20));
            (d, p2p, rpc)
        };
        let (peer1, addr1, _) = daemon(&tempdir!(&format!("{name}-peer1")), &[]);
        let (peer2, addr2, _) = daemon(&tempdir!(&format!("{name}-peer2")), &[]);
        let mut flags = vec!["--rpc-user", USER, "--rpc-password", PASSWORD];
        if replies == Replies::Legacy {
            flags.push("--rpc-strict-jsonrpc2=false");
        }
        let started = Instant::now();
        let (node, _, rpc) = daemon(&tempdir!(&format!("{name}-node")), &flags);
        Net {
            node,
            rpc,
            peers: [addr1, addr2],
            _peers: [peer1, peer2],
            started,
        }
    }

    /// `http://` and the node's RPC address, then `path`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.rpc)
    }

    /// Stops the node and checks it stopped cleanly.
    fn stop(mut self) {
        assert!(self.node.terminate().success(), "the node's exit status");
    }
}

fn unix_millis() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// The port of a `127.0.0.1:PORT` address.
fn port(addr: &str) -> u16 {
    addr.parse::<SocketAddr>().unwrap().port()
}

/// Whether every peer of `before` (address, bytes of `ping` sent to it) has been sent more
/// `ping` bytes in `now`.
fn pinged_each(before: &[(String, u64)], now: &[(String, u64)]) -> bool {
    now.len() == before.len() && now.iter().zip(before).all(|(n, b)| n.0 == b.0 && n.1 > b.1)
}

// ---------------------------------------------------------------------------------------------
// bitcoincore-rpc

mod bitcoincore {
    use bitcoincore_rpc::bitcoin::Amount;
    use bitcoincore_rpc::json::{
        GetAddedNodeInfoResultAddressType, GetPeerInfoResult, GetPeerInfoResultConnectionType,
        GetPeerInfoResultNetwork, StringOrStringArray,
    };
    use bitcoincore_rpc::{jsonrpc, Auth, Client, Error, RpcApi};

    use super::*;

    /// The code of the RPC error `r` must be.
    fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> i32 {
        match r {
            Err(Error::JsonRpc(jsonrpc::Error::Rpc(e))) => e.code,
            other => panic!("expected an RPC error, got {other:?}"),
        }
    }

    pub(super) fn session(replies: Replies) {
        let net = Net::start("bitcoincore-rpc", replies);
        let auth = || Auth::UserPass(USER.into(), PASSWORD.into());
        let rpc = Client::new(&net.url(""), auth()).unwrap();
        let [onetry, add] = &net.peers;

        let info = rpc.get_network_info().unwrap();
        assert_eq!(info.version, CORE_VERSION);
        assert_eq!(rpc.version().unwrap(), CORE_VERSION);
        assert!(info.subversion.starts_with("/peerpool:"), "{info:?}");
        assert_eq!(info.warnings, StringOrStringArray::StringArray(vec![]));
        assert!(info.network_active);
        assert_eq!(info.connections, 0);
        assert_eq!(rpc.get_connection_count().unwrap(), 0);
        assert!(rpc.get_peer_info().unwrap().is_empty());
        // Which replies the client gets: Core 28+ echoes the request's `"jsonrpc": "2.0"`.
        let raw = rpc.get_jsonrpc_client();
        let reply = raw.send_request(raw.build_request("uptime", None)).unwrap();
        let echoed = (replies == Replies::Strict).then_some("2.0");
        assert_eq!(reply.jsonrpc.as_deref(), echoed);

        // addnode onetry: a connection whose row decodes into the typed struct.
        rpc.onetry_node(onetry).unwrap();
        let peer = eventually("the onetry peer after its handshake", || {
            let rows = rpc.get_peer_info().unwrap();
            rows.into_iter()
                .find(|p| &p.addr == onetry && p.version > 0)
        });
        assert!(!peer.inbound);
        assert_eq!(
            peer.connection_type,
            Some(GetPeerInfoResultConnectionType::Manual)
        );
        assert_eq!(
            peer.network,
            Some(GetPeerInfoResultNetwork::NotPubliclyRoutable)
        );
        assert_eq!(peer.addnode, Some(true));
        assert_eq!(peer.version, info.protocol_version as u64);
        assert!(peer.subver.starts_with("/peerpool:"), "{peer:?}");
        assert_eq!(peer.startingheight, 0);
        assert_eq!(peer.banscore, Some(0));
        assert_eq!(peer.whitelisted, Some(false));
        assert_eq!((peer.synced_headers, peer.synced_blocks), (-1, -1));
        assert_eq!(peer.min_fee_filter, Some(Amount::ZERO));
        let bind: SocketAddr = peer.addrbind.parse().unwrap();
        assert!(bind.ip().is_loopback(), "{peer:?}");
        assert!(peer.bytessent_per_msg["version"] > 0, "{peer:?}");

        // addnode add, twice; getaddednodeinfo, all and by name.
        rpc.add_node(add).unwrap();
        assert_eq!(code(rpc.add_node(add)), -23);
        let added = eventually("the added node connected", || {
            let added = rpc.get_added_node_info(None).unwrap();
            (added.len() == 1 && added[0].connected).then_some(added)
        });
        assert_eq!(&added[0].added_node, add);
        assert_eq!(added[0].addresses.len(), 1);
        assert_eq!(&added[0].addresses[0].address, add);
        assert_eq!(
            added[0].addresses[0].connected,
            GetAddedNodeInfoResultAddressType::Outbound
        );
        assert_eq!(rpc.get_added_node_info(Some(add)).unwrap(), added);
        eventually("two connections", || {
            (rpc.get_connection_count().unwrap() == 2).then_some(())
        });
        let info = rpc.get_network_info().unwrap();
        assert_eq!(
            (info.connections, info.connections_in, info.connections_out),
            (2, Some(0), Some(2))
        );

        // ping: a ping goes to every peer.
        let pings = || {
            let rows = rpc.get_peer_info().unwrap().into_iter();
            let ping = |p: &GetPeerInfoResult| p.bytessent_per_msg.get("ping").copied();
            rows.map(|p| (p.addr.clone(), ping(&p).unwrap_or(0)))
                .collect::<Vec<_>>()
        };
        let before = pings();
        assert_eq!(before.len(), 2);
        rpc.ping().unwrap();
        eventually("a ping sent to each peer", || {
            pinged_each(&before, &pings()).then_some(())
        });

        let totals = rpc.get_net_totals().unwrap();
        assert!(totals.total_bytes_sent > 0 && totals.total_bytes_recv > 0);
        assert!(
            totals.time_millis.abs_diff(unix_millis()) < 60_000,
            "{totals:?}"
        );
        assert_eq!(totals.upload_target.target, 0);
        assert_eq!(totals.upload_target.time_frame, 86_400);

        // The peers' addresses reach the address book as they advertise themselves.
        let book = eventually("the onetry peer in getnodeaddresses", || {
            let book = rpc.get_node_addresses(Some(0)).unwrap();
            book.iter()
                .any(|a| a.address == "127.0.0.1" && a.port == port(onetry))
                .then_some(book)
        });
        assert!(book.iter().all(|a| a.time > 0), "{book:?}");

        // setban, listbanned, clearbanned.
        rpc.add_ban("127.0.0.99", 600, false).unwrap();
        rpc.add_ban("127.1.0.0/16", 0, false).unwrap();
        let bans = rpc.list_banned().unwrap();
        let subnets: Vec<&str> = bans.iter().map(|b| b.address.as_str()).collect();
        assert_eq!(subnets, ["127.0.0.99/32", "127.1.0.0/16"]);
        assert_eq!(bans[0].banned_until - bans[0].ban_created, 600);
        assert_eq!(bans[1].banned_until - bans[1].ban_created, 86_400);
        assert_eq!(code(rpc.add_ban("127.0.0.99", 600, false)), -23);
        rpc.remove_ban("127.0.0.99").unwrap();
        assert_eq!(rpc.list_banned().unwrap().len(), 1);
        rpc.clear_banned().unwrap();
        assert!(rpc.list_banned().unwrap().is_empty());
        assert_eq!(code(rpc.add_ban("not-an-ip", 600, false)), -30);

        // disconnectnode by address; then the added node, removed first so it is not redialed,
        // by id.
        rpc.disconnect_node(onetry).unwrap();
        eventually("the onetry peer gone", || {
            let rows = rpc.get_peer_info().unwrap();
            rows.iter().all(|p| &p.addr != onetry).then_some(())
        });
        assert_eq!(code(rpc.disconnect_node(onetry)), -29);
        rpc.remove_node(add).unwrap();
        assert_eq!(code(rpc.remove_node(add)), -24);
        assert!(rpc.get_added_node_info(None).unwrap().is_empty());
        let rows = rpc.get_peer_info().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0].addr, add);
        rpc.disconnect_node_by_id(u32::try_from(rows[0].id).unwrap())
            .unwrap();
        eventually("no connections", || {
            (rpc.get_connection_count().unwrap() == 0).then_some(())
        });

        let uptime = rpc.uptime().unwrap();
        assert!(uptime <= net.started.elapsed().as_secs() + 1, "{uptime}");

        // Clients in default-wallet mode post to /wallet/; a named wallet's path is served too.
        for path in ["/wallet/", "/wallet/w"] {
            let wallet = Client::new(&net.url(path), auth()).unwrap();
            assert_eq!(wallet.get_network_info().unwrap().version, CORE_VERSION);
            assert_eq!(wallet.get_connection_count().unwrap(), 0);
        }

        let unknown = rpc.call::<serde_json::Value>("nosuchmethod", &[]);
        assert_eq!(code(unknown), -32601);
        let wrong = Client::new(&net.url(""), Auth::UserPass(USER.into(), "wrong".into()));
        let err = wrong.unwrap().get_connection_count().unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        net.stop();
    }
}

#[test]
fn bitcoincore_rpc_drives_the_daemon() {
    bitcoincore::session(Replies::Legacy);
}

#[test]
fn bitcoincore_rpc_drives_the_daemon_with_strict_jsonrpc2() {
    bitcoincore::session(Replies::Strict);
}

// ---------------------------------------------------------------------------------------------
// corepc-client

mod corepc {
    // The blocking client is deprecated in favour of a crate meant for Core's own regtest
    // tests; it is still what corepc-client ships, and what its users call.
    #![allow(deprecated)]

    use corepc_client::client_sync::v31::{AddNodeCommand, Client, SetBanCommand};
    use corepc_client::client_sync::{Auth, Error};
    use corepc_client::types::v31::{ConnectionType, PeerInfo, TransportProtocolType};

    use super::*;

    fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> i32 {
        match r {
            Err(Error::JsonRpc(jsonrpc::Error::Rpc(e))) => e.code,
            other => panic!("expected an RPC error, got {other:?}"),
        }
    }

    pub(super) fn session(replies: Replies) {
        let net = Net::start("corepc", replies);
        let auth = || Auth::UserPass(USER.into(), PASSWORD.into());
        let rpc = Client::new_with_auth(&net.url(""), auth()).unwrap();
        let [onetry, add] = &net.peers;

        // The client's own check that it speaks to the Core it was written for.
        rpc.check_expected_server_version().unwrap();
        let info = rpc.get_network_info().unwrap();
        assert_eq!(info.version, CORE_VERSION);
        assert!(info.subversion.starts_with("/peerpool:"), "{info:?}");
        assert!(info.warnings.is_empty(), "{info:?}");
        assert!(info.network_active);
        assert_eq!(
            (info.connections, info.connections_in, info.connections_out),
            (0, 0, 0)
        );
        assert_eq!(info.networks.len(), 5);
        assert_eq!(rpc.get_connection_count().unwrap().0, 0);
        assert!(rpc.get_peer_info().unwrap().0.is_empty());

        // addnode onetry: a connection whose row decodes into Core 31's struct.
        rpc.add_node(onetry, AddNodeCommand::OneTry).unwrap();
        let peer = eventually("the onetry peer after its handshake", || {
            let rows = rpc.get_peer_info().unwrap().0;
            rows.into_iter()
                .find(|p| &p.address == onetry && p.version > 0)
        });
        assert!(!peer.inbound);
        assert_eq!(peer.connection_type, Some(ConnectionType::Manual));
        assert_eq!(peer.transport_protocol_type, TransportProtocolType::V1);
        assert_eq!(peer.session_id, "");
        assert_eq!(peer.network, "not_publicly_routable");
        assert_eq!(peer.version as usize, info.protocol_version);
        assert!(peer.subversion.starts_with("/peerpool:"), "{peer:?}");
        assert_eq!(peer.starting_height, Some(0));
        assert_eq!(peer.services, "0000000000000000");
        assert!(peer.services_names.is_empty());
        assert!(peer.permissions.is_empty());
        assert_eq!(peer.minimum_fee_filter, 0.0);
        assert_eq!(peer.inflight, Some(vec![]));
        assert_eq!(peer.addresses_relay_enabled, Some(true));
        let bind: SocketAddr = peer.address_bind.as_deref().unwrap().parse().unwrap();
        assert!(bind.ip().is_loopback(), "{peer:?}");
        assert!(peer.bytes_sent_per_message["version"] > 0, "{peer:?}");

        // addnode add, twice; getaddednodeinfo.
        rpc.add_node(add, AddNodeCommand::Add).unwrap();
        assert_eq!(code(rpc.add_node(add, AddNodeCommand::Add)), -23);
        let added = eventually("the added node connected", || {
            let added = rpc.get_added_node_info().unwrap().0;
            (added.len() == 1 && added[0].connected).then_some(added)
        });
        assert_eq!(&added[0].added_node, add);
        assert_eq!(added[0].addresses.len(), 1);
        assert_eq!(&added[0].addresses[0].address, add);
        assert_eq!(added[0].addresses[0].connected, "outbound");
        eventually("two connections", || {
            (rpc.get_connection_count().unwrap().0 == 2).then_some(())
        });

        // ping: a ping goes to every peer.
        let pings = || {
            let rows = rpc.get_peer_info().unwrap().0.into_iter();
            let ping = |p: &PeerInfo| p.bytes_sent_per_message.get("ping").copied();
            rows.map(|p| (p.address.clone(), ping(&p).unwrap_or(0)))
                .collect::<Vec<_>>()
        };
        let before = pings();
        assert_eq!(before.len(), 2);
        rpc.ping().unwrap();
        eventually("a ping sent to each peer", || {
            pinged_each(&before, &pings()).then_some(())
        });

        let totals = rpc.get_net_totals().unwrap();
        assert!(totals.total_bytes_sent > 0 && totals.total_bytes_received > 0);
        assert!(
            totals.time_millis.abs_diff(unix_millis()) < 60_000,
            "{totals:?}"
        );
        assert_eq!(totals.upload_target.target, 0);
        assert_eq!(totals.upload_target.timeframe, 86_400);

        // getnodeaddresses returns one address unless asked for more; the peers' own
        // advertisements fill the address book.
        let book = eventually("two addresses in getnodeaddresses", || {
            let book = rpc.get_node_addresses().unwrap().0;
            let full = rpc.call::<serde_json::Value>("getnodeaddresses", &[0.into()]);
            (full.unwrap().as_array().unwrap().len() == 2).then_some(book)
        });
        assert_eq!(book.len(), 1);
        assert_eq!(book[0].address, "127.0.0.1");
        assert!(
            [port(onetry), port(add)].contains(&book[0].port),
            "{book:?}"
        );
        // Core's network class: loopback is not publicly routable.
        assert_eq!(book[0].network, "not_publicly_routable");

        // setban (Core's default ban time), listbanned with Core 22's fields, clearbanned.
        rpc.set_ban("127.0.0.99", SetBanCommand::Add).unwrap();
        let bans = rpc.list_banned().unwrap().0;
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].address, "127.0.0.99/32");
        assert_eq!(bans[0].ban_duration, 86_400);
        assert_eq!(bans[0].banned_until - bans[0].ban_created, 86_400);
        assert!(bans[0].time_remaining <= 86_400 && bans[0].time_remaining > 86_000);
        assert_eq!(code(rpc.set_ban("127.0.0.99", SetBanCommand::Add)), -23);
        rpc.set_ban("127.0.0.99", SetBanCommand::Remove).unwrap();
        assert!(rpc.list_banned().unwrap().0.is_empty());
        assert_eq!(code(rpc.set_ban("127.0.0.99", SetBanCommand::Remove)), -30);
        rpc.set_ban("127.1.0.0/16", SetBanCommand::Add).unwrap();
        rpc.clear_banned().unwrap();
        assert!(rpc.list_banned().unwrap().0.is_empty());

        // disconnectnode, and addnode remove.
        rpc.disconnect_node(onetry).unwrap();
        eventually("the onetry peer gone", || {
            let rows = rpc.get_peer_info().unwrap().0;
            rows.iter().all(|p| &p.address != onetry).then_some(())
        });
        assert_eq!(code(rpc.disconnect_node(onetry)), -29);
        rpc.add_node(add, AddNodeCommand::Remove).unwrap();
        assert_eq!(code(rpc.add_node(add, AddNodeCommand::Remove)), -24);
        assert!(rpc.get_added_node_info().unwrap().0.is_empty());
        rpc.disconnect_node(add).unwrap();
        eventually("no connections", || {
            (rpc.get_connection_count().unwrap().0 == 0).then_some(())
        });

        let uptime = rpc.uptime().unwrap();
        assert!(
            u64::from(uptime) <= net.started.elapsed().as_secs() + 1,
            "{uptime}"
        );

        for path in ["/wallet/", "/wallet/w"] {
            let wallet = Client::new_with_auth(&net.url(path), auth()).unwrap();
            assert_eq!(wallet.server_version().unwrap(), CORE_VERSION);
            assert_eq!(wallet.get_connection_count().unwrap().0, 0);
        }

        let unknown = rpc.call::<serde_json::Value>("nosuchmethod", &[]);
        assert_eq!(code(unknown), -32601);
        let wrong = Client::new_with_auth(&net.url(""), Auth::UserPass(USER.into(), "x".into()));
        let err = wrong.unwrap().get_connection_count().unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        net.stop();
    }
}

#[test]
fn corepc_client_drives_the_daemon() {
    corepc::session(Replies::Legacy);
}

#[test]
fn corepc_client_drives_the_daemon_with_strict_jsonrpc2() {
    corepc::session(Replies::Strict);
}

// ---------------------------------------------------------------------------------------------
// npm's bitcoin-core

/// Runs `tests/rpc/bitcoin_core_check.js` under Node.js against a fresh net, with the
/// `bitcoin-core` package that `tests/rpc/package-lock.json` pins.
fn bitcoin_core_session(replies: Replies) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let modules = npm::install(&root.join("tests/rpc"), &target.join("npm-rpc-clients"));
    let net = Net::start("bitcoin-core", replies);
    let out = Command::new("node")
        .arg(root.join("tests/rpc/bitcoin_core_check.js"))
        .args([&net.url(""), USER, PASSWORD, &net.peers[0], &net.peers[1]])
        .env("NODE_PATH", &modules)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "stdout: {stdout}\nstderr: {stderr}"
    );
    net.stop();
}

#[test]
fn bitcoin_core_npm_drives_the_daemon() {
    bitcoin_core_session(Replies::Legacy);
}

#[test]
fn bitcoin_core_npm_drives_the_daemon_with_strict_jsonrpc2() {
    bitcoin_core_session(Replies::Strict);
}
