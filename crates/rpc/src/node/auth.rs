//! Who may call: a user and password, the cookie file, `rpcauth` entries.
//!
//! As in Bitcoin Core, a client authenticates with HTTP Basic credentials. They are checked
//! against, in turn: the `--rpc-user`/`--rpc-password` pair; the cookie (user `__cookie__`,
//! a random password written to `.cookie` in the data directory at start and removed at
//! stop) when no password is configured; and every `rpcauth` entry
//! (`USER:SALT$HEX(HMAC-SHA256(key = SALT, message = PASSWORD))`), which lets the
//! configuration hold no password in the clear.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cookie file's name in the data directory. Bitcoin Core: `COOKIEAUTH_FILE`.
pub const COOKIE_FILE: &str = ".cookie";

/// The cookie's user name. Bitcoin Core: `COOKIEAUTH_USER`.
pub const COOKIE_USER: &str = "__cookie__";

/// Why an `rpcauth` entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rpcauth entry {0:?}: expected USER:SALT$HASH, HASH 64 hex digits")]
pub struct RpcAuthError(pub String);

/// One `rpcauth` entry: a user and a salted hash of their password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcAuth {
    user: String,
    salt: String,
    hash: [u8; 32],
}

impl RpcAuth {
    /// Parses `USER:SALT$HASH`.
    pub fn parse(spec: &str) -> Result<RpcAuth, RpcAuthError> {
        let err = || RpcAuthError(spec.to_owned());
        let (user, rest) = spec.split_once(':').ok_or_else(err)?;
        let (salt, hash) = rest.split_once('$').ok_or_else(err)?;
        if user.is_empty() || salt.is_empty() || hash.len() != 64 {
            return Err(err());
        }
        let bytes = hex::decode(hash).map_err(|_| err())?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(RpcAuth {
            user: user.to_owned(),
            salt: salt.to_owned(),
            hash: out,
        })
    }

    /// The entry for `user` and `password` with `salt`, as Bitcoin Core's `rpcauth.py`
    /// prints it.
    pub fn make(user: &str, salt: &str, password: &str) -> String {
        format!("{user}:{salt}${}", hex::encode(hmac_of(salt, password)))
    }

    fn accepts(&self, user: &str, password: &str) -> bool {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.salt.as_bytes()) {
            Ok(m) => m,
            Err(_) => return false,
        };
        mac.update(password.as_bytes());
        // `verify_slice` compares in constant time.
        let hash_ok = mac.verify_slice(&self.hash).is_ok();
        constant_time_eq(self.user.as_bytes(), user.as_bytes()) & hash_ok
    }
}

fn hmac_of(salt: &str, password: &str) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(salt.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(password.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credentials a server accepts.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// `user:password` pairs (the configured one, the cookie).
    pairs: Vec<(String, String)>,
    /// `rpcauth` entries.
    rpcauth: Vec<RpcAuth>,
}

impl Credentials {
    /// Accepts `user` with `password`.
    pub fn with_password(mut self, user: &str, password: &str) -> Credentials {
        self.pairs.push((user.to_owned(), password.to_owned()));
        self
    }

    /// Accepts what `entry` describes.
    pub fn with_rpcauth(mut self, entry: RpcAuth) -> Credentials {
        self.rpcauth.push(entry);
        self
    }

    /// Whether nothing is accepted.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.rpcauth.is_empty()
    }

    /// Whether `user` with `password` is accepted.
    pub fn check_pair(&self, user: &str, password: &str) -> bool {
        // Every entry is tried, so the time taken does not tell which matched.
        let mut ok = false;
        for (u, p) in &self.pairs {
            ok |= constant_time_eq(u.as_bytes(), user.as_bytes())
                & constant_time_eq(p.as_bytes(), password.as_bytes());
        }
        for entry in &self.rpcauth {
            ok |= entry.accepts(user, password);
        }
        ok
    }

    /// Whether an `Authorization` header value carries accepted Basic credentials.
    pub fn check(&self, header: &str) -> bool {
        let Some(encoded) = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        self.check_pair(user, password)
    }
}

/// What every failed credential check pays, shared by all the listeners of a daemon (node RPC
/// and admin): a wait of [`FailedAuth::DELAY`] taken one failure at a time, so that
/// guesses cost the same however many connections carry them (at most four a second in all),
/// and a count for `/metrics`.
#[derive(Debug, Default)]
pub struct FailedAuth {
    turn: tokio::sync::Mutex<()>,
    count: Counter,
}

impl FailedAuth {
    /// Delay per failed attempt. Bitcoin Core: the 250 ms sleep of `HTTPReq_JSONRPC` (there
    /// per request; here in turn with every other failure).
    pub const DELAY: Duration = Duration::from_millis(250);

    /// A budget whose failures count in `count`.
    pub fn counting(count: Counter) -> FailedAuth {
        FailedAuth {
            turn: tokio::sync::Mutex::new(()),
            count,
        }
    }

    /// Counts a failure and waits its turn and its delay.
    pub async fn pay(&self) {
        self.count.inc();
        let _turn = self.turn.lock().await;
        tokio::time::sleep(FailedAuth::DELAY).await;
    }

    /// Failures so far.
    pub fn count(&self) -> u64 {
        self.count.get()
    }
}

/// The `Authorization` header value for `user` and `password`.
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A cookie file written for this run; removed when dropped (at server stop), as Bitcoin
/// Core does, so a stale cookie never outlives its daemon.
#[derive(Debug)]
pub struct Cookie {
    path: PathBuf,
    password: String,
}

impl Cookie {
    /// Writes `.cookie` in `dir` with a fresh random password (32 bytes, hex), readable
    /// only by the owner.
    pub fn create(dir: &Path) -> io::Result<Cookie> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        let password = hex::encode(bytes);
        let path = dir.join(COOKIE_FILE);
        let tmp = dir.join(format!("{COOKIE_FILE}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        {
            use std::io::Write;
            let mut f = options.open(&tmp)?;
            f.write_all(format!("{COOKIE_USER}:{password}").as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(Cookie { path, password })
    }

    /// The cookie's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Cookie {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads a cookie file: `(user, password)`.
pub fn read_cookie(path: &Path) -> io::Result<(String, String)> {
    let text = std::fs::read_to_string(path)?;
    let line = text.lines().next().unwrap_or("");
    match line.split_once(':') {
        Some((u, p)) => Ok((u.to_owned(), p.to_owned())),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a USER:PASSWORD cookie", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcauth_entries_check_the_salted_hash() {
        let entry = RpcAuth::make("alice", "c0ffee", "secret");
        let creds = Credentials::default().with_rpcauth(RpcAuth::parse(&entry).unwrap());
        assert!(creds.check(&basic_header("alice", "secret")));
        assert!(!creds.check(&basic_header("alice", "Secret")));
        assert!(!creds.check(&basic_header("bob", "secret")));
        assert!(!creds.check("Basic !!!"));
        assert!(!creds.check("Bearer x"));
        for bad in ["alice", "alice:salt", "alice:salt$zz", ":s$00", "a:$00"] {
            assert!(RpcAuth::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cookie_is_written_and_removed() {
        let dir = std::env::temp_dir().join(format!("peerpool-cookie-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cookie = Cookie::create(&dir).unwrap();
        let (user, password) = read_cookie(cookie.path()).unwrap();
        assert_eq!(user, COOKIE_USER);
        assert_eq!(password, cookie.password());
        assert_eq!(password.len(), 64);
        let path = cookie.path().to_owned();
        drop(cookie);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
