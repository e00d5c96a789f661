//! The pool's files: the address book and the ban list, through [`crate::persist`].

use std::io;
use std::path::{Path, PathBuf};

use peerpool_core::pool::addrman::{self, AddrMan};
use peerpool_core::pool::banman::BanList;
use tracing::{error, info};

use crate::persist;

/// File name of the address book in the data directory (Bitcoin Core's name).
pub const PEERS_FILE: &str = "peers.dat";
/// File name of the ban list in the data directory (Bitcoin Core's name).
pub const BANS_FILE: &str = "banlist.dat";

/// Largest address book payload read: [`addrman::MAX_ENTRIES`] entries of at most 135 bytes
/// each (two 35-byte addresses, services, four times, attempts, table, and eight bucket
/// numbers; see the book's codec) and the fixed fields, rounded up. Bitcoin Core bounds its
/// `peers.dat` the same way, by its fixed table size.
const MAX_PEERS_PAYLOAD: u64 = 12 << 20;
/// Largest ban list payload read: a million bans, far beyond any real list.
const MAX_BANS_PAYLOAD: u64 = 32 << 20;

/// Snapshot kind tags (see [`persist`]).
const PEERS_KIND: &str = "peers";
const BANS_KIND: &str = "banlist";

/// Where the pool keeps its state.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    peers: PathBuf,
    bans: PathBuf,
}

/// The serialized state, taken from the machine by the driver and written elsewhere: both
/// files, or one of them.
pub(crate) struct Snapshot {
    pub(crate) peers: Option<Vec<u8>>,
    pub(crate) bans: Option<Vec<u8>>,
}

impl Snapshot {
    /// What it holds, for the log.
    pub(crate) fn what(&self) -> &'static str {
        match (&self.peers, &self.bans) {
            (Some(_), Some(_)) => "address book and bans",
            (Some(_), None) => "address book",
            (None, _) => "bans",
        }
    }
}

impl Store {
    pub(crate) fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
            peers: dir.join(PEERS_FILE),
            bans: dir.join(BANS_FILE),
        }
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads what there is. A file that cannot be trusted is reported, set aside and
    /// replaced by empty state; nothing here stops a start.
    pub(crate) fn load(
        &self,
        config: &addrman::Config,
        rng: fastrand::Rng,
    ) -> (Option<AddrMan>, Option<BanList>) {
        let book =
            read(&self.peers, PEERS_KIND, MAX_PEERS_PAYLOAD, "address book").and_then(|bytes| {
                match AddrMan::deserialize_with(&bytes, config.clone(), rng) {
                    Ok(book) => {
                        info!(
                            "loaded {} addresses from {}",
                            book.size(),
                            self.peers.display()
                        );
                        Some(book)
                    }
                    Err(e) => {
                        refused(&self.peers, "address book", &e);
                        None
                    }
                }
            });
        let bans = read(&self.bans, BANS_KIND, MAX_BANS_PAYLOAD, "ban list").and_then(|bytes| {
            match BanList::decode(&bytes) {
                Ok(bans) => {
                    info!("loaded {} bans from {}", bans.len(), self.bans.display());
                    Some(bans)
                }
                Err(e) => {
                    refused(&self.bans, "ban list", &e);
                    None
                }
            }
        });
        (book, bans)
    }

    /// Writes the files the snapshot holds, each atomically (see [`persist::save`]).
    pub(crate) fn save(&self, snapshot: &Snapshot) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            io::Error::new(e.kind(), format!("creating {}: {e}", self.dir.display()))
        })?;
        let files = [
            (&self.peers, PEERS_KIND, &snapshot.peers),
            (&self.bans, BANS_KIND, &snapshot.bans),
        ];
        for (path, kind, bytes) in files {
            if let Some(bytes) = bytes {
                persist::save(path, kind, bytes).map_err(|e| {
                    io::Error::new(e.kind(), format!("saving {}: {e}", path.display()))
                })?;
            }
        }
        Ok(())
    }
}

/// The payload of a snapshot file, or `None` (first start, or a damaged file, reported).
fn read(path: &Path, kind: &str, max: u64, what: &str) -> Option<Vec<u8>> {
    match persist::load_bounded(path, kind, max) {
        Ok(found) => found,
        Err(e) => {
            error!("{what} not loaded, starting without it: {e}");
            None
        }
    }
}

/// A file whose checksum held but whose content its decoder refused: set it aside too.
fn refused(path: &Path, what: &str, problem: &dyn std::fmt::Display) {
    match persist::move_aside(path) {
        Ok(to) => error!(
            "{what} {} not loaded, starting without it: {problem}; moved aside to {}",
            path.display(),
            to.display()
        ),
        Err(e) => error!(
            "{what} {} not loaded, starting without it: {problem}; could not move it aside: {e}",
            path.display()
        ),
    }
}
