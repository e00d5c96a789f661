//! Shared fixtures for the wire crate's integration tests: one representative message per
//! [`MessageKind`], and small helpers to frame bytes and to drive a [`FrameDecoder`] the way a
//! connection task would (bytes arriving in arbitrary pieces).
//!
//! Each file under `tests/` is compiled as its own crate and uses a different subset of these
//! helpers, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::borrow::Cow;

use bitcoin::bip152::{BlockTransactions, BlockTransactionsRequest, HeaderAndShortIds};
use bitcoin::block::Block;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::CommandString;
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
use bitcoin::p2p::message_bloom::{BloomFlags, FilterAdd, FilterLoad};
use bitcoin::p2p::message_compact_blocks::{BlockTxn, CmpctBlock, GetBlockTxn, SendCmpct};
use bitcoin::p2p::message_filter::{
    CFCheckpt, CFHeaders, CFilter, GetCFCheckpt, GetCFHeaders, GetCFilters,
};
use bitcoin::p2p::message_network::{Reject, RejectReason, VersionMessage};
use bitcoin::{
    absolute, transaction, Amount, BlockHash, FilterHash, FilterHeader, MerkleBlock, OutPoint,
    ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness, Wtxid,
};
use bytes::BytesMut;
use peerpool_wire::frame::encode_frame;
use peerpool_wire::{Command, Frame, FrameDecoder, FrameError, Magic, MessageKind, NetworkMessage};
use peerpool_wire::{Network, ServiceFlags};

/// Mainnet magic, taken from the crate's own chain table so the tests notice if it drifts.
pub fn magic() -> Magic {
    Network::Mainnet.params().magic
}

/// Bitcoin's genesis block: real consensus data with a real coinbase transaction.
pub fn genesis() -> Block {
    bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin)
}

/// A segwit transaction (one P2WPKH-shaped input with a two-item witness), so the witness
/// serialisation path of `tx`, `blocktxn` and `cmpctblock` is exercised and not only the legacy
/// one the genesis coinbase takes. Signatures are not checked by the codec, so the witness items
/// only need the right shape.
pub fn segwit_tx() -> Transaction {
    let mut signature = vec![0x30u8; 71];
    signature[70] = 0x01; // SIGHASH_ALL
    let mut pubkey = vec![0x02u8];
    pubkey.extend_from_slice(&hash32(42));
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::from_height(840_000).expect("valid height"),
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array(hash32(40)),
                vout: 1,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::from_slice(&[signature, pubkey]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(99_990_000),
            script_pubkey: ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([0x4a; 20])),
        }],
    }
}

fn hash32(seed: u8) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    h
}

fn block_hash(seed: u8) -> BlockHash {
    BlockHash::from_byte_array(hash32(seed))
}

pub fn version_message() -> VersionMessage {
    let receiver = Address::new(
        &"203.0.113.7:8333".parse().expect("socket address"),
        ServiceFlags::NETWORK | ServiceFlags::WITNESS,
    );
    let sender = Address::new(
        &"[2001:db8::1]:8333".parse().expect("socket address"),
        ServiceFlags::NETWORK_LIMITED,
    );
    VersionMessage {
        version: 70016,
        services: ServiceFlags::NETWORK | ServiceFlags::WITNESS | ServiceFlags::COMPACT_FILTERS,
        timestamp: 1_700_000_000,
        receiver,
        sender,
        nonce: 0x0123_4567_89ab_cdef,
        user_agent: "/Satoshi:27.0.0/peerpool-test/".into(),
        start_height: 840_000,
        relay: false,
    }
}

/// A representative message of `kind`.
///
/// The match has no wildcard arm on purpose: adding a kind to the crate without a fixture here
/// is a compile error, so the "every kind round-trips" test cannot silently skip one.
pub fn sample(kind: MessageKind) -> NetworkMessage {
    let genesis = genesis();
    match kind {
        MessageKind::Version => NetworkMessage::Version(version_message()),
        MessageKind::Verack => NetworkMessage::Verack,
        MessageKind::Addr => NetworkMessage::Addr(vec![
            (
                1_700_000_000,
                Address::new(&"198.51.100.1:8333".parse().unwrap(), ServiceFlags::NETWORK),
            ),
            (
                1_700_000_100,
                Address::new(
                    &"[2001:db8::2]:18333".parse().unwrap(),
                    ServiceFlags::WITNESS,
                ),
            ),
        ]),
        MessageKind::AddrV2 => NetworkMessage::AddrV2(vec![
            AddrV2Message {
                time: 1_700_000_000,
                services: ServiceFlags::NETWORK,
                addr: AddrV2::Ipv4("198.51.100.9".parse().unwrap()),
                port: 8333,
            },
            AddrV2Message {
                time: 1_700_000_001,
                services: ServiceFlags::NETWORK | ServiceFlags::P2P_V2,
                addr: AddrV2::Ipv6("2001:db8::9".parse().unwrap()),
                port: 8333,
            },
            AddrV2Message {
                time: 1_700_000_002,
                services: ServiceFlags::NONE,
                addr: AddrV2::TorV3(hash32(3)),
                port: 8333,
            },
            AddrV2Message {
                time: 1_700_000_003,
                services: ServiceFlags::NETWORK_LIMITED,
                addr: AddrV2::I2p(hash32(4)),
                port: 0,
            },
            AddrV2Message {
                time: 1_700_000_004,
                services: ServiceFlags::NETWORK,
                addr: AddrV2::Cjdns("fc00::1".parse().unwrap()),
                port: 8333,
            },
        ]),
        MessageKind::SendAddrV2 => NetworkMessage::SendAddrV2,
        MessageKind::Inv => NetworkMessage::Inv(vec![
            Inventory::Transaction(Txid::from_byte_array(hash32(1))),
            Inventory::Block(genesis.block_hash()),
            Inventory::WTx(Wtxid::from_byte_array(hash32(2))),
        ]),
        MessageKind::GetData => NetworkMessage::GetData(vec![
            Inventory::WitnessBlock(genesis.block_hash()),
            Inventory::WitnessTransaction(Txid::from_byte_array(hash32(5))),
            Inventory::CompactBlock(block_hash(6)),
        ]),
        MessageKind::NotFound => NetworkMessage::NotFound(vec![Inventory::Unknown {
            inv_type: 0x4000_0007,
            hash: hash32(7),
        }]),
        MessageKind::GetBlocks => NetworkMessage::GetBlocks(GetBlocksMessage {
            version: 70016,
            locator_hashes: vec![block_hash(8), block_hash(9), genesis.block_hash()],
            stop_hash: BlockHash::all_zeros(),
        }),
        MessageKind::GetHeaders => NetworkMessage::GetHeaders(GetHeadersMessage {
            version: 70016,
            locator_hashes: vec![genesis.block_hash()],
            stop_hash: block_hash(10),
        }),
        MessageKind::MemPool => NetworkMessage::MemPool,
        MessageKind::Tx => NetworkMessage::Tx(segwit_tx()),
        MessageKind::Block => NetworkMessage::Block(genesis),
        MessageKind::Headers => {
            let mut second = genesis.header;
            second.prev_blockhash = genesis.block_hash();
            second.nonce = 7;
            NetworkMessage::Headers(vec![genesis.header, second])
        }
        MessageKind::SendHeaders => NetworkMessage::SendHeaders,
        MessageKind::GetAddr => NetworkMessage::GetAddr,
        MessageKind::Ping => NetworkMessage::Ping(0xdead_beef_0bad_f00d),
        MessageKind::Pong => NetworkMessage::Pong(0xdead_beef_0bad_f00d),
        MessageKind::MerkleBlock => {
            // Three transactions, one of them matched, so the partial tree has both pruned and
            // descended branches.
            let mut block = genesis;
            let wanted = segwit_tx().compute_txid();
            block.txdata.push(segwit_tx());
            let mut third = segwit_tx();
            third.lock_time = absolute::LockTime::ZERO;
            block.txdata.push(third);
            let built = MerkleBlock::from_block_with_predicate(&block, |txid| *txid == wanted);
            // The builder keeps the flag bits unpadded, while the wire form (and so any
            // decoder) pads them to whole bytes; both mean the same tree. Store the padded
            // form so the fixture compares equal to what any decoder returns.
            let canonical: MerkleBlock = bitcoin::consensus::encode::deserialize(
                &bitcoin::consensus::encode::serialize(&built),
            )
            .expect("own serialisation decodes");
            NetworkMessage::MerkleBlock(canonical)
        }
        MessageKind::FilterLoad => NetworkMessage::FilterLoad(FilterLoad {
            filter: vec![0xa5; 36],
            hash_funcs: 11,
            tweak: 0x1234_5678,
            flags: BloomFlags::PubkeyOnly,
        }),
        MessageKind::FilterAdd => NetworkMessage::FilterAdd(FilterAdd {
            data: hash32(11).to_vec(),
        }),
        MessageKind::FilterClear => NetworkMessage::FilterClear,
        MessageKind::GetCFilters => NetworkMessage::GetCFilters(GetCFilters {
            filter_type: 0,
            start_height: 800_000,
            stop_hash: block_hash(12),
        }),
        MessageKind::CFilter => NetworkMessage::CFilter(CFilter {
            filter_type: 0,
            block_hash: block_hash(13),
            filter: vec![1, 0x2b, 0x3c, 0x4d],
        }),
        MessageKind::GetCFHeaders => NetworkMessage::GetCFHeaders(GetCFHeaders {
            filter_type: 0,
            start_height: 1,
            stop_hash: block_hash(14),
        }),
        MessageKind::CFHeaders => NetworkMessage::CFHeaders(CFHeaders {
            filter_type: 0,
            stop_hash: block_hash(15),
            previous_filter_header: FilterHeader::from_byte_array(hash32(16)),
            filter_hashes: vec![
                FilterHash::from_byte_array(hash32(17)),
                FilterHash::from_byte_array(hash32(18)),
            ],
        }),
        MessageKind::GetCFCheckpt => NetworkMessage::GetCFCheckpt(GetCFCheckpt {
            filter_type: 0,
            stop_hash: block_hash(19),
        }),
        MessageKind::CFCheckpt => NetworkMessage::CFCheckpt(CFCheckpt {
            filter_type: 0,
            stop_hash: block_hash(20),
            filter_headers: vec![
                FilterHeader::from_byte_array(hash32(21)),
                FilterHeader::from_byte_array(hash32(22)),
            ],
        }),
        MessageKind::SendCmpct => NetworkMessage::SendCmpct(SendCmpct {
            send_compact: true,
            version: 2,
        }),
        MessageKind::CmpctBlock => {
            // A two-transaction block, so the compact form carries both a prefilled coinbase
            // and a short id.
            let mut block = genesis;
            block.txdata.push(segwit_tx());
            let compact = HeaderAndShortIds::from_block(&block, 0x5eed, 2, &[])
                .expect("version 2 compact block");
            assert_eq!(compact.short_ids.len(), 1, "fixture must hold a short id");
            NetworkMessage::CmpctBlock(CmpctBlock {
                compact_block: compact,
            })
        }
        MessageKind::GetBlockTxn => NetworkMessage::GetBlockTxn(GetBlockTxn {
            txs_request: BlockTransactionsRequest {
                block_hash: block_hash(23),
                // Differentially encoded on the wire: gaps of 0, 1 and 1000 between indexes.
                indexes: vec![0, 1, 3, 1004],
            },
        }),
        MessageKind::BlockTxn => NetworkMessage::BlockTxn(BlockTxn {
            transactions: BlockTransactions {
                block_hash: genesis.block_hash(),
                transactions: vec![genesis.txdata[0].clone(), segwit_tx()],
            },
        }),
        MessageKind::Alert => NetworkMessage::Alert(b"final alert, signature elided".to_vec()),
        MessageKind::Reject => NetworkMessage::Reject(Reject {
            message: Cow::Borrowed("tx"),
            ccode: RejectReason::Fee,
            reason: Cow::Borrowed("min relay fee not met"),
            hash: sha256d::Hash::from_byte_array(hash32(24)),
        }),
        MessageKind::FeeFilter => NetworkMessage::FeeFilter(1_000),
        MessageKind::WtxidRelay => NetworkMessage::WtxidRelay,
        MessageKind::Feature => NetworkMessage::Unknown {
            command: CommandString::try_from_static("feature").expect("valid command"),
            payload: peerpool_wire::feature::Feature::new(*b"BIP434", [1, 2]).to_payload(),
        },
        MessageKind::Unknown => NetworkMessage::Unknown {
            command: CommandString::try_from_static("xyzzy").expect("valid command"),
            payload: vec![0, 1, 2, 0xfe, 0xff],
        },
    }
}

/// One message of every kind, in [`MessageKind::ALL`] order.
pub fn all_samples() -> Vec<(MessageKind, NetworkMessage)> {
    MessageKind::ALL.iter().map(|&k| (k, sample(k))).collect()
}

/// A complete frame of `payload` under `command`, with a correct checksum.
pub fn frame_bytes(command: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(
        magic(),
        Command::new(command).expect("valid command"),
        payload,
        &mut out,
    );
    out
}

/// What one `decode` call produced.
pub type Step = Result<Frame, FrameError>;

/// Feeds `wire` to a fresh decoder, `chunks` giving the sizes of successive reads (cycled; a
/// zero size is treated as one byte so the feed always progresses). After every read the
/// decoder is drained, and decoding stops at the first fatal error, as a connection would.
pub fn feed_in_chunks(wire: &[u8], chunks: &[usize]) -> (Vec<Step>, BytesMut) {
    let mut decoder = FrameDecoder::new(magic());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut sizes = chunks.iter().copied().cycle();
    while pos < wire.len() {
        let size = sizes.next().unwrap_or(wire.len()).max(1);
        let end = (pos + size).min(wire.len());
        buf.extend_from_slice(&wire[pos..end]);
        pos = end;
        if drain(&mut decoder, &mut buf, &mut out) {
            return (out, buf);
        }
    }
    (out, buf)
}

/// Takes every frame the buffer holds; returns true if a fatal error ended the stream.
pub fn drain(decoder: &mut FrameDecoder, buf: &mut BytesMut, out: &mut Vec<Step>) -> bool {
    loop {
        match decoder.decode(buf) {
            Ok(Some(frame)) => out.push(Ok(frame)),
            Ok(None) => return false,
            Err(e) => {
                let fatal = e.is_fatal();
                out.push(Err(e));
                if fatal {
                    return true;
                }
            }
        }
    }
}
