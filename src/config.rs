//! `peerpool run` settings: command-line flags over an optional TOML file with the same keys.
//!
//! Every flag of `run` has a key of the same name in the file (`--max-connections 40` is
//! `max-connections = 40`; repeatable flags are arrays: `addnode = ["10.0.0.1:8333"]`;
//! `--no-dnsseed` is `dnsseed = false`). A flag given on the command line replaces the file's
//! value; for a repeatable flag, the whole list. Unknown keys and values of the wrong type are
//! errors, never ignored. Relative paths in the file are taken from the file's directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use peerpool::core::pool::machine::{Permission, WhitelistEntry};
use peerpool::net::pool::Subnet;
use serde::Deserialize;

/// The configuration file. Kebab-case keys, as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub network: Option<String>,
    pub chain: Option<PathBuf>,
    pub datadir: Option<PathBuf>,
    pub listen: Option<Vec<String>>,
    pub no_listen: Option<bool>,
    pub connect: Option<Vec<String>>,
    pub addnode: Option<Vec<String>>,
    pub seednode: Option<Vec<String>>,
    pub dnsseed: Option<bool>,
    pub proxy: Option<String>,
    pub max_connections: Option<usize>,
    pub target_outbound: Option<usize>,
    pub max_inbound: Option<usize>,
    pub ban_threshold: Option<u32>,
    pub save_interval: Option<u64>,
    pub whitelist: Option<Vec<String>>,
    pub allow_local_addresses: Option<bool>,
    pub user_agent_comment: Option<Vec<String>>,
    pub log_level: Option<String>,
    // Node RPC (see `crate::rpc`).
    pub rpc_bind: Option<Vec<String>>,
    pub rpc_allow_ip: Option<Vec<String>>,
    pub rpc_user: Option<String>,
    pub rpc_password: Option<String>,
    pub rpcauth: Option<Vec<String>>,
    pub rpc_strict_jsonrpc2: Option<bool>,
    // Admin listener (see `crate::admin`).
    pub admin_bind: Option<Vec<String>>,
    pub no_admin: Option<bool>,
}

impl FileConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let mut file: FileConfig = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("config file {}: {}", path.display(), e.to_string().trim())
        })?;
        if file.network.is_some() && file.chain.is_some() {
            bail!(
                "config file {}: `network` and `chain` cannot both be set",
                path.display()
            );
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut file.chain, &mut file.datadir].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(file)
    }
}

/// Parses a whitelist entry in Bitcoin Core's syntax: `[PERMISSIONS@]SUBNET`, permissions
/// comma-separated (`noban,relay@127.0.0.0/8`); without any, Core's implicit set.
pub fn parse_whitelist(spec: &str) -> anyhow::Result<WhitelistEntry> {
    let (perms, subnet) = match spec.split_once('@') {
        Some((p, s)) => (Some(p), s),
        None => (None, spec),
    };
    let subnet: Subnet = subnet
        .parse()
        .with_context(|| format!("--whitelist {spec:?}"))?;
    let permissions = match perms {
        None => Permission::DEFAULT.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match Permission::parse(name) {
                    Some(p) => out.push(p),
                    None => bail!(
                        "--whitelist {spec:?}: unknown permission {name:?} (known: noban, relay, \
                         mempool, download, addr, bloomfilter, forcerelay)"
                    ),
                }
            }
            if out.is_empty() {
                bail!("--whitelist {spec:?}: no permission before '@'");
            }
            out
        }
    };
    Ok(WhitelistEntry {
        subnet,
        permissions,
    })
}

/// The flag's value if given, else the file's.
pub fn pick<T>(flag: Option<T>, file: Option<T>) -> Option<T> {
    flag.or(file)
}

/// A repeatable flag's values if any were given, else the file's list.
pub fn pick_list(flag: &[String], file: &Option<Vec<String>>) -> Vec<String> {
    if flag.is_empty() {
        file.clone().unwrap_or_default()
    } else {
        flag.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitelist_entries_follow_core_syntax() {
        let e = parse_whitelist("noban,relay@127.0.0.0/8").unwrap();
        assert_eq!(e.permissions, vec![Permission::NoBan, Permission::Relay]);
        assert_eq!(e.subnet.to_string(), "127.0.0.0/8");
        let e = parse_whitelist("10.0.0.1").unwrap();
        assert_eq!(e.permissions, Permission::DEFAULT);
        assert!(parse_whitelist("nobna@10.0.0.0/8").is_err());
        assert!(parse_whitelist("noban@").is_err());
        assert!(parse_whitelist("@10.0.0.0/8").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("max-conections = 3").is_err());
        assert!(toml::from_str::<FileConfig>("max-connections = \"many\"").is_err());
        let ok: FileConfig =
            toml::from_str("max-connections = 3\naddnode = [\"1.2.3.4\"]\ndnsseed = false")
                .unwrap();
        assert_eq!(ok.max_connections, Some(3));
        assert_eq!(ok.dnsseed, Some(false));
    }
}
