//! Chain parameters: what a peer must know to speak to one Bitcoin-family network.
//!
//! Bitcoin's own networks are built in ([`Network`]); any other chain that speaks the same
//! protocol (its own magic, port, seeds and protocol versions) is described in TOML, parsed
//! by [`ChainParams::from_toml`] (reading the file is the caller's business; this crate does
//! no I/O):
//!
//! ```toml
//! name = "litecoin"
//! magic = "fbc0b6db"          # the four header bytes, in wire order
//! default_port = 9333
//! dns_seeds = ["dnsseed.litecoinpool.org"]
//! min_protocol_version = 70002
//! protocol_version = 70015
//! ```

use std::fmt;
use std::str::FromStr;

use bitcoin::p2p::Magic;
use serde::Deserialize;

/// Bitcoin Core: `PROTOCOL_VERSION` (70016, BIP339 wtxidrelay). The highest version we speak.
pub const PROTOCOL_VERSION: u32 = 70016;

/// Bitcoin Core: `MIN_PEER_PROTO_VERSION` (31800). Older peers are disconnected.
pub const MIN_PEER_PROTO_VERSION: u32 = 31800;

/// Parameters of one chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainParams {
    /// Short name, used in logs and RPC (`main`, `test`, `testnet4`, `signet`, `regtest`, ...).
    pub name: String,
    /// Network magic: the first four bytes of every message header.
    pub magic: Magic,
    /// Port peers listen on by default.
    pub default_port: u16,
    /// DNS seed host names.
    pub dns_seeds: Vec<String>,
    /// Peers announcing a lower protocol version are disconnected.
    pub min_protocol_version: u32,
    /// The protocol version we announce; negotiation settles on min(ours, theirs).
    pub protocol_version: u32,
}

/// Bitcoin's built-in networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// Bitcoin mainnet.
    Mainnet,
    /// testnet3.
    Testnet3,
    /// testnet4 (BIP94).
    Testnet4,
    /// The default signet.
    Signet,
    /// Local regression-test network.
    Regtest,
}

impl Network {
    /// Every built-in network.
    pub const ALL: [Network; 5] = [
        Network::Mainnet,
        Network::Testnet3,
        Network::Testnet4,
        Network::Signet,
        Network::Regtest,
    ];

    /// The parameters of this network (values of Bitcoin Core's `chainparams.cpp`).
    pub fn params(self) -> ChainParams {
        let (name, magic, port, seeds): (&str, [u8; 4], u16, &[&str]) = match self {
            Network::Mainnet => (
                "main",
                [0xf9, 0xbe, 0xb4, 0xd9],
                8333,
                &[
                    "seed.bitcoin.sipa.be",
                    "dnsseed.bluematt.me",
                    "seed.bitcoin.jonasschnelli.ch",
                    "seed.btc.petertodd.net",
                    "seed.bitcoin.sprovoost.nl",
                    "dnsseed.emzy.de",
                    "seed.bitcoin.wiz.biz",
                    "seed.mainnet.achownodes.xyz",
                ],
            ),
            Network::Testnet3 => (
                "test",
                [0x0b, 0x11, 0x09, 0x07],
                18333,
                &[
                    "testnet-seed.bitcoin.jonasschnelli.ch",
                    "seed.tbtc.petertodd.net",
                    "seed.testnet.bitcoin.sprovoost.nl",
                    "testnet-seed.bluematt.me",
                    "seed.testnet.achownodes.xyz",
                ],
            ),
            Network::Testnet4 => (
                "testnet4",
                [0x1c, 0x16, 0x3f, 0x28],
                48333,
                &[
                    "seed.testnet4.bitcoin.sprovoost.nl",
                    "seed.testnet4.wiz.biz",
                ],
            ),
            Network::Signet => (
                "signet",
                [0x0a, 0x03, 0xcf, 0x40],
                38333,
                &[
                    "seed.signet.bitcoin.sprovoost.nl",
                    "seed.signet.achownodes.xyz",
                ],
            ),
            Network::Regtest => ("regtest", [0xfa, 0xbf, 0xb5, 0xda], 18444, &[]),
        };
        ChainParams {
            name: name.to_owned(),
            magic: Magic::from_bytes(magic),
            default_port: port,
            dns_seeds: seeds.iter().map(|s| (*s).to_owned()).collect(),
            min_protocol_version: MIN_PEER_PROTO_VERSION,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Network::Mainnet => "mainnet",
            Network::Testnet3 => "testnet",
            Network::Testnet4 => "testnet4",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        })
    }
}

impl FromStr for Network {
    type Err = ChainError;

    /// Accepts the names Bitcoin Core's `-chain=` takes and their common spellings.
    fn from_str(s: &str) -> Result<Network, ChainError> {
        match s.to_ascii_lowercase().as_str() {
            "main" | "mainnet" | "bitcoin" => Ok(Network::Mainnet),
            "test" | "testnet" | "testnet3" => Ok(Network::Testnet3),
            "testnet4" => Ok(Network::Testnet4),
            "signet" => Ok(Network::Signet),
            "regtest" => Ok(Network::Regtest),
            _ => Err(ChainError::UnknownNetwork(s.to_owned())),
        }
    }
}

/// Why chain parameters could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The network name is none of the built-in ones.
    #[error(
        "unknown network {0:?}: expected mainnet, testnet, testnet4, signet or regtest \
         (or a chain file)"
    )]
    UnknownNetwork(String),
    /// The chain file is not valid TOML of the expected shape.
    #[error("parsing chain file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A field has an unusable value.
    #[error("chain file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainFile {
    name: String,
    magic: String,
    default_port: u16,
    #[serde(default)]
    dns_seeds: Vec<String>,
    #[serde(default = "default_min")]
    min_protocol_version: u32,
    #[serde(default = "default_max")]
    protocol_version: u32,
}

fn default_min() -> u32 {
    MIN_PEER_PROTO_VERSION
}

fn default_max() -> u32 {
    PROTOCOL_VERSION
}

impl ChainParams {
    /// Parses a chain description; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<ChainParams, ChainError> {
        let path = origin.to_owned();
        let file: ChainFile = toml::from_str(text).map_err(|e| ChainError::Parse {
            path: path.clone(),
            message: e.to_string().trim().to_owned(),
        })?;
        let invalid = |message: String| ChainError::Invalid {
            path: path.clone(),
            message,
        };
        let name = file.name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(format!(
                "name {:?} must be non-empty letters, digits, '-', '_' or '.'",
                file.name
            )));
        }
        let magic = parse_magic(&file.magic).map_err(invalid)?;
        if file.default_port == 0 {
            return Err(invalid("default_port must not be 0".into()));
        }
        if file.min_protocol_version > file.protocol_version {
            return Err(invalid(format!(
                "min_protocol_version {} is above protocol_version {}",
                file.min_protocol_version, file.protocol_version
            )));
        }
        for seed in &file.dns_seeds {
            if seed.is_empty() || seed.len() > 253 || seed.contains(char::is_whitespace) {
                return Err(invalid(format!("dns seed {seed:?} is not a host name")));
            }
        }
        Ok(ChainParams {
            name: name.to_owned(),
            magic,
            default_port: file.default_port,
            dns_seeds: file.dns_seeds,
            min_protocol_version: file.min_protocol_version,
            protocol_version: file.protocol_version,
        })
    }
}

fn parse_magic(s: &str) -> Result<Magic, String> {
    let s = s.trim().trim_start_matches("0x");
    if s.len() != 8 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "magic {s:?} must be 8 hex digits (4 bytes in wire order)"
        ));
    }
    let mut bytes = [0u8; 4];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(Magic::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_magics_match_the_bitcoin_crate() {
        use bitcoin::Network as B;
        let pairs = [
            (Network::Mainnet, B::Bitcoin),
            (Network::Testnet3, B::Testnet),
            (Network::Testnet4, B::Testnet4),
            (Network::Signet, B::Signet),
            (Network::Regtest, B::Regtest),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(ours.params().magic, Magic::from(theirs), "{ours}");
        }
    }

    #[test]
    fn names_parse() {
        for n in Network::ALL {
            assert_eq!(n.to_string().parse::<Network>().unwrap(), n);
            assert_eq!(n.params().name.parse::<Network>().unwrap(), n);
        }
        assert!("mainnett".parse::<Network>().is_err());
    }

    #[test]
    fn chain_file_parses() {
        let c = ChainParams::from_toml(
            "name = \"litecoin\"\nmagic = \"fbc0b6db\"\ndefault_port = 9333\n\
             dns_seeds = [\"a.example\"]\nprotocol_version = 70015\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.magic.to_bytes(), [0xfb, 0xc0, 0xb6, 0xdb]);
        assert_eq!(c.protocol_version, 70015);
        assert_eq!(c.min_protocol_version, MIN_PEER_PROTO_VERSION);
    }

    #[test]
    fn bad_chain_files_say_what_is_wrong() {
        let cases = [
            (
                "name = \"x\"\nmagic = \"fbc0b6\"\ndefault_port = 1\n",
                "8 hex digits",
            ),
            (
                "name = \"x\"\nmagic = \"zzzzzzzz\"\ndefault_port = 1\n",
                "8 hex digits",
            ),
            (
                "name = \"x\"\nmagic = \"fbc0b6db\"\ndefault_port = 0\n",
                "default_port",
            ),
            ("name = \"x\"\nmagic = \"fbc0b6db\"\n", "default_port"),
            (
                "name = \"\"\nmagic = \"fbc0b6db\"\ndefault_port = 1\n",
                "name",
            ),
            (
                "name = \"x\"\nmagic = \"fbc0b6db\"\ndefault_port = 70000\n",
                "default_port",
            ),
            (
                "name = \"x\"\nmagic = \"fbc0b6db\"\ndefault_port = 1\nbogus = 1\n",
                "bogus",
            ),
            (
                "name = \"x\"\nmagic = \"fbc0b6db\"\ndefault_port = 1\nmin_protocol_version = 9\n\
                 protocol_version = 8\n",
                "min_protocol_version",
            ),
            ("not toml at all [", "parsing"),
        ];
        for (text, needle) in cases {
            let e = ChainParams::from_toml(text, "bad.toml")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(needle),
                "{text:?} gave {e:?}, expected to mention {needle:?}"
            );
            assert!(e.contains("bad.toml"), "{e}");
        }
    }
}
