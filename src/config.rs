//! `peerpool run` settings: command-line flags over an optional TOML file with the same keys.
//!
//! Every flag of `run` has a key of the same name in the file (`--max-connections 40` is
//! `max-connections = 40`; repeatable flags are arrays: `addnode = ["10.0.0.1:8333"]`;
//! `--no-dnsseed` is `dnsseed = false`). A flag given on the command line replaces the file's
//! value; for a repeatable flag, the whole list. Unknown keys and values of the wrong type are
//! errors, never ignored. Relative paths in the file are taken from the file's directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use peerpool::core::asmap::{Asmap, MAX_ASMAP_BYTES};
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
    pub asmap: Option<PathBuf>,
    pub user_agent_comment: Option<Vec<String>>,
    pub log_level: Option<String>,
    // Hardening (see `crate::logging`, `crate::guard`).
    pub log_max_size: Option<String>,
    pub log_keep: Option<u64>,
    pub admin_auth: Option<bool>,
    // Node RPC (see `crate::rpc`).
    pub rpc_bind: Option<Vec<String>>,
    pub rpc_allow_ip: Option<Vec<String>>,
    pub rpc_user: Option<String>,
    pub rpc_password: Option<String>,
    pub rpcauth: Option<Vec<String>>,
    pub rpc_strict_jsonrpc2: Option<bool>,
    pub deprecatedrpc: Option<Vec<String>>,
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
        for p in [&mut file.chain, &mut file.datadir, &mut file.asmap]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(file)
    }
}

/// Reads and checks an asmap file: a regular file of at most [`MAX_ASMAP_BYTES`] (checked
/// before it is opened, so a FIFO or a device is refused without blocking), that passes the
/// format's sanity check.
pub fn load_asmap(path: &Path) -> anyhow::Result<Asmap> {
    use std::io::Read;
    let what = || format!("--asmap {}", path.display());
    let meta = std::fs::metadata(path).with_context(what)?;
    if !meta.is_file() {
        bail!("{}: not a regular file", what());
    }
    if meta.len() > MAX_ASMAP_BYTES as u64 {
        bail!(
            "{}: {} bytes, more than the {MAX_ASMAP_BYTES} accepted",
            what(),
            meta.len()
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_ASMAP_BYTES as u64 + 1).read_to_end(&mut bytes))
        .with_context(what)?;
    Asmap::from_bytes(&bytes).with_context(what)
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

    // ----- random configuration files --------------------------------------------------------

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A small seeded generator (SplitMix64): the binary has no random-number dependency.
    struct Rng(u64);

    impl Rng {
        /// The seed of this run: `PEERPOOL_TEST_SEED` to replay one, else a random one.
        /// Printed, so a failing run shows it.
        fn from_env() -> Rng {
            use std::hash::{BuildHasher, RandomState};
            let seed = std::env::var("PEERPOOL_TEST_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| RandomState::new().hash_one(std::process::id()));
            println!("PEERPOOL_TEST_SEED={seed}");
            Rng(seed)
        }

        fn u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.u64() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    /// What a key of [`FileConfig`] holds.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        Str,
        Path,
        List,
        Bool,
        Usize,
        U32,
        U64,
    }

    /// Every key of the file, with its type.
    const KEYS: &[(&str, Kind)] = &[
        ("network", Kind::Str),
        ("chain", Kind::Path),
        ("datadir", Kind::Path),
        ("listen", Kind::List),
        ("no-listen", Kind::Bool),
        ("connect", Kind::List),
        ("addnode", Kind::List),
        ("seednode", Kind::List),
        ("dnsseed", Kind::Bool),
        ("proxy", Kind::Str),
        ("max-connections", Kind::Usize),
        ("target-outbound", Kind::Usize),
        ("max-inbound", Kind::Usize),
        ("ban-threshold", Kind::U32),
        ("save-interval", Kind::U64),
        ("whitelist", Kind::List),
        ("allow-local-addresses", Kind::Bool),
        ("asmap", Kind::Path),
        ("user-agent-comment", Kind::List),
        ("log-level", Kind::Str),
        ("log-max-size", Kind::Str),
        ("log-keep", Kind::U64),
        ("admin-auth", Kind::Bool),
        ("rpc-bind", Kind::List),
        ("rpc-allow-ip", Kind::List),
        ("rpc-user", Kind::Str),
        ("rpc-password", Kind::Str),
        ("rpcauth", Kind::List),
        ("rpc-strict-jsonrpc2", Kind::Bool),
        ("deprecatedrpc", Kind::List),
        ("admin-bind", Kind::List),
        ("no-admin", Kind::Bool),
    ];

    /// Near misses of real keys and keys from other programs.
    const UNKNOWN_KEYS: &[&str] = &[
        "max-conections",
        "maxconnections",
        "Max-Connections",
        "rpc_user",
        "dnsseeds",
        "port",
        "rpc",
        "",
        "net work",
        "ünïcode",
    ];

    /// A TOML value, with enough structure to know which keys it fits.
    #[derive(Clone, Debug)]
    enum Val {
        Str(String),
        /// Any integer, including ones TOML cannot hold (beyond `i64`).
        Int(i128),
        Float(&'static str),
        Bool(bool),
        Array(Vec<Val>),
        Table(Vec<(String, Val)>),
        Datetime(&'static str),
    }

    impl Val {
        fn random(rng: &mut Rng, depth: u32) -> Val {
            match rng.below(if depth > 2 { 6 } else { 8 }) {
                0 | 1 => {
                    const CHARS: &[char] = &[
                        'a', 'z', '0', '.', ':', '/', ' ', '"', '\\', '\'', '\n', '\t', '\0',
                        '\u{7f}', 'é', '日', '🦀', '#', '=', '[',
                    ];
                    let len = rng.below(12);
                    Val::Str((0..len).map(|_| *rng.pick(CHARS)).collect())
                }
                2 => {
                    let any = i128::from(rng.u64() as i64);
                    Val::Int(*rng.pick(&[
                        0,
                        1,
                        -1,
                        any,
                        i128::from(u32::MAX),
                        i128::from(u32::MAX) + 1,
                        i128::from(i64::MAX),
                        i128::from(i64::MIN),
                        i128::from(u64::MAX),
                        10i128.pow(30),
                        -(10i128.pow(30)),
                    ]))
                }
                3 => {
                    const FLOATS: &[&str] = &["1.5", "-0.0", "inf", "-inf", "nan", "1e300", "3.0"];
                    Val::Float(FLOATS[rng.below(FLOATS.len())])
                }
                4 => Val::Bool(rng.below(2) == 0),
                5 => {
                    const DATETIMES: &[&str] = &[
                        "1979-05-27T07:32:00Z",
                        "1979-05-27",
                        "07:32:00",
                        "1979-05-27T00:32:00.999999-07:00",
                    ];
                    Val::Datetime(DATETIMES[rng.below(DATETIMES.len())])
                }
                6 => {
                    let n = rng.below(4);
                    let all_strings = rng.below(2) == 0;
                    Val::Array(
                        (0..n)
                            .map(|_| {
                                if all_strings {
                                    Val::Str(format!("10.0.0.{}:8333", rng.below(256)))
                                } else {
                                    Val::random(rng, depth + 1)
                                }
                            })
                            .collect(),
                    )
                }
                _ => {
                    let n = rng.below(3);
                    Val::Table(
                        (0..n)
                            .map(|i| (format!("k{i}"), Val::random(rng, depth + 1)))
                            .collect(),
                    )
                }
            }
        }

        /// Whether TOML can write it at all.
        fn representable(&self) -> bool {
            match self {
                Val::Int(i) => i64::try_from(*i).is_ok(),
                Val::Array(items) => items.iter().all(Val::representable),
                Val::Table(items) => items.iter().all(|(_, v)| v.representable()),
                _ => true,
            }
        }

        /// Whether a key of `kind` accepts it.
        fn fits(&self, kind: Kind) -> bool {
            match (self, kind) {
                (Val::Str(_), Kind::Str | Kind::Path) | (Val::Bool(_), Kind::Bool) => true,
                (Val::Int(i), Kind::Usize | Kind::U64) => (0..=i128::from(i64::MAX)).contains(i),
                (Val::Int(i), Kind::U32) => (0..=i128::from(u32::MAX)).contains(i),
                (Val::Array(items), Kind::List) => items.iter().all(|v| matches!(v, Val::Str(_))),
                _ => false,
            }
        }

        fn render(&self) -> String {
            match self {
                Val::Str(s) => quote(s),
                Val::Int(i) => i.to_string(),
                Val::Float(f) | Val::Datetime(f) => f.to_string(),
                Val::Bool(b) => b.to_string(),
                Val::Array(items) => {
                    let items: Vec<String> = items.iter().map(Val::render).collect();
                    format!("[{}]", items.join(", "))
                }
                Val::Table(items) => {
                    let items: Vec<String> = items
                        .iter()
                        .map(|(k, v)| format!("{} = {}", key(k), v.render()))
                        .collect();
                    format!("{{ {} }}", items.join(", "))
                }
            }
        }
    }

    /// A TOML basic string holding exactly `s`.
    fn quote(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// A key, bare when TOML allows it.
    fn key(k: &str) -> String {
        let bare = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if bare {
            k.to_owned()
        } else {
            quote(k)
        }
    }

    /// What `FileConfig::load` made of one key, in the terms of [`Val`].
    fn loaded(file: &FileConfig, name: &str) -> Option<String> {
        fn s<T: std::fmt::Debug>(v: &Option<T>) -> Option<String> {
            v.as_ref().map(|v| format!("{v:?}"))
        }
        match name {
            "network" => s(&file.network),
            "chain" => s(&file.chain),
            "datadir" => s(&file.datadir),
            "listen" => s(&file.listen),
            "no-listen" => s(&file.no_listen),
            "connect" => s(&file.connect),
            "addnode" => s(&file.addnode),
            "seednode" => s(&file.seednode),
            "dnsseed" => s(&file.dnsseed),
            "proxy" => s(&file.proxy),
            "max-connections" => s(&file.max_connections),
            "target-outbound" => s(&file.target_outbound),
            "max-inbound" => s(&file.max_inbound),
            "ban-threshold" => s(&file.ban_threshold),
            "save-interval" => s(&file.save_interval),
            "whitelist" => s(&file.whitelist),
            "allow-local-addresses" => s(&file.allow_local_addresses),
            "asmap" => s(&file.asmap),
            "user-agent-comment" => s(&file.user_agent_comment),
            "log-level" => s(&file.log_level),
            "log-max-size" => s(&file.log_max_size),
            "log-keep" => s(&file.log_keep),
            "admin-auth" => s(&file.admin_auth),
            "rpc-bind" => s(&file.rpc_bind),
            "rpc-allow-ip" => s(&file.rpc_allow_ip),
            "rpc-user" => s(&file.rpc_user),
            "rpc-password" => s(&file.rpc_password),
            "rpcauth" => s(&file.rpcauth),
            "rpc-strict-jsonrpc2" => s(&file.rpc_strict_jsonrpc2),
            "deprecatedrpc" => s(&file.deprecatedrpc),
            "admin-bind" => s(&file.admin_bind),
            "no-admin" => s(&file.no_admin),
            other => panic!("no field for key {other:?}"),
        }
    }

    /// What a key holding `v` should load as, given the file's directory.
    fn expected(v: &Val, kind: Kind, dir: &Path) -> String {
        match (v, kind) {
            (Val::Str(s), Kind::Path) => format!("{:?}", dir.join(s)),
            (Val::Str(s), _) => format!("{s:?}"),
            (Val::Int(i), _) => i.to_string(),
            (Val::Bool(b), _) => b.to_string(),
            (Val::Array(items), _) => {
                let items: Vec<&str> = items
                    .iter()
                    .map(|v| match v {
                        Val::Str(s) => s.as_str(),
                        _ => unreachable!("only string lists fit"),
                    })
                    .collect();
                format!("{items:?}")
            }
            _ => unreachable!("only fitting values are loaded"),
        }
    }

    /// A fresh directory for this test's files, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "peerpool-config-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// Writes `bytes` as the config file and loads it.
        fn load(&self, bytes: &[u8]) -> (PathBuf, anyhow::Result<FileConfig>) {
            let path = self.0.join("peerpool.toml");
            std::fs::write(&path, bytes).unwrap();
            (path.clone(), FileConfig::load(&path))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn every_key_of_the_file_is_known_to_the_random_documents() {
        let scratch = Scratch::new("all-keys");
        let doc: String = KEYS
            .iter()
            .filter(|(k, _)| *k != "chain")
            .map(|(k, kind)| {
                let v = match kind {
                    Kind::Str | Kind::Path => "\"x\"",
                    Kind::List => "[\"x\"]",
                    Kind::Bool => "true",
                    Kind::Usize | Kind::U32 | Kind::U64 => "7",
                };
                format!("{k} = {v}\n")
            })
            .collect();
        let (_, file) = scratch.load(doc.as_bytes());
        let file = file.unwrap();
        for (k, _) in KEYS {
            assert_eq!(loaded(&file, k).is_some(), *k != "chain", "{k}");
        }
        // Every field of the struct is one of KEYS: its Debug lists each once, `None` or not.
        let fields = format!("{file:?}").matches(": ").count();
        assert_eq!(fields, KEYS.len());
    }

    /// Documents of real and unknown keys with values of every type: a document whose every
    /// value fits its key loads those values; any other is refused with a message naming the
    /// file and an offending key.
    #[test]
    fn random_config_documents_load_exactly_or_fail_naming_file_and_key() {
        let mut rng = Rng::from_env();
        let scratch = Scratch::new("random-docs");
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..600 {
            let mut pairs: Vec<(String, Option<Kind>, Val)> = Vec::new();
            for _ in 0..rng.below(6) {
                let (name, kind) = if rng.below(8) == 0 {
                    (rng.pick(UNKNOWN_KEYS).to_string(), None)
                } else {
                    let (k, kind) = *rng.pick(KEYS);
                    (k.to_owned(), Some(kind))
                };
                if pairs.iter().any(|(n, _, _)| *n == name) {
                    continue;
                }
                // Half the values fit their key, so that many documents load.
                let value = match kind {
                    Some(kind) if rng.below(2) == 0 => loop {
                        let v = Val::random(&mut rng, 0);
                        if v.fits(kind) {
                            break v;
                        }
                    },
                    _ => Val::random(&mut rng, 0),
                };
                pairs.push((name, kind, value));
            }
            let mut doc = String::new();
            for (name, _, value) in &pairs {
                if rng.below(4) == 0 {
                    doc.push_str("# a comment = 1\n\n");
                }
                doc.push_str(&format!("{} = {}\n", key(name), value.render()));
            }
            let (path, result) = scratch.load(doc.as_bytes());
            let offending: Vec<&str> = pairs
                .iter()
                .filter(|(_, kind, v)| !v.representable() || !kind.is_some_and(|k| v.fits(k)))
                .map(|(n, _, _)| n.as_str())
                .collect();
            let has = |k: &str| pairs.iter().any(|(n, _, _)| n == k);
            let context = format!("round {round}, document:\n{doc}");
            match result {
                Ok(file) => {
                    accepted += 1;
                    assert!(
                        offending.is_empty(),
                        "{context}accepted despite {offending:?}"
                    );
                    assert!(!(has("network") && has("chain")), "{context}");
                    for (name, kind, value) in &pairs {
                        let kind = kind.expect("only known keys load");
                        assert_eq!(
                            loaded(&file, name),
                            Some(expected(value, kind, &scratch.0)),
                            "{context}key {name}"
                        );
                    }
                }
                Err(e) => {
                    refused += 1;
                    let message = format!("{e:#}");
                    assert!(
                        message.contains(&path.display().to_string()),
                        "{context}error does not name the file: {message}"
                    );
                    if offending.is_empty() {
                        assert!(
                            has("network") && has("chain"),
                            "{context}refused: {message}"
                        );
                        assert!(message.contains("cannot both be set"), "{message}");
                    } else {
                        assert!(
                            offending
                                .iter()
                                .any(|k| message.contains(&key(k)) || message.contains(k)),
                            "{context}error names none of {offending:?}: {message}"
                        );
                    }
                }
            }
        }
        assert!(
            accepted > 50 && refused > 50,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// Bytes that are not UTF-8, not TOML, or TOML nested past any sane depth: always an error
    /// naming the file, never a panic or a stack overflow.
    #[test]
    fn garbage_config_files_fail_naming_the_file() {
        let mut rng = Rng::from_env();
        let scratch = Scratch::new("garbage");
        let check = |bytes: &[u8], what: &str| {
            let (path, result) = scratch.load(bytes);
            if let Err(e) = result {
                let message = format!("{e:#}");
                assert!(
                    message.contains(&path.display().to_string()),
                    "{what}: error does not name the file: {message}"
                );
                Some(message)
            } else {
                None
            }
        };

        // A sound document with one byte that cannot be UTF-8.
        for bad in [0xff_u8, 0xc0, 0x80, 0xfe] {
            let mut doc = b"max-connections = 8\nnetwork = \"main\"\n".to_vec();
            let at = rng.below(doc.len() + 1);
            doc.insert(at, bad);
            let message = check(&doc, "non-UTF-8").expect("non-UTF-8 file accepted");
            assert!(message.contains("UTF-8"), "{message}");
        }

        // Random bytes, and random runs of TOML's own punctuation and keywords.
        const TOKENS: &[&str] = &[
            "[",
            "]",
            "[[",
            "]]",
            "{",
            "}",
            "=",
            ".",
            ",",
            "\"",
            "'",
            "'''",
            "\"\"\"",
            "#",
            "\n",
            " ",
            "\\",
            "network",
            "listen",
            "true",
            "1",
            "-",
            "+",
            "0x",
            "1e",
            "nan",
            "inf",
            "1979-05-27",
            "T",
            "Z",
            ":",
            "\u{0}",
            "\r",
            "é",
        ];
        for round in 0..400 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                (0..rng.below(200)).map(|_| rng.u64() as u8).collect()
            } else {
                (0..rng.below(60))
                    .flat_map(|_| rng.pick(TOKENS).bytes())
                    .collect()
            };
            check(
                &bytes,
                &format!("round {round}: {:?}", String::from_utf8_lossy(&bytes)),
            );
        }

        // Deep nesting of arrays and inline tables, and a huge key and value.
        for open in ["[", "{a="] {
            let doc = format!("listen = {}", open.repeat(100_000));
            check(doc.as_bytes(), "deep nesting").expect("unclosed nesting accepted");
        }
        let doc = format!(
            "{} = 1\nrpc-user = \"{}\"\n",
            "k".repeat(1 << 16),
            "u".repeat(1 << 20)
        );
        let message = check(doc.as_bytes(), "huge key").expect("unknown huge key accepted");
        assert!(
            message.contains("unknown field"),
            "{}",
            &message[..200.min(message.len())]
        );

        // An empty file and an empty list are fine.
        let (_, file) = scratch.load(b"");
        assert!(file.is_ok());
        let (_, file) = scratch.load(b"addnode = []\n");
        assert_eq!(file.unwrap().addnode, Some(vec![]));
    }
}
