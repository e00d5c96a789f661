//! Damaged state files in a data directory: random damage to a saved snapshot is reported as
//! corruption naming the file and the file is set aside; a snapshot whose envelope checks out
//! around a damaged payload reaches the address book and ban list decoders, which load it
//! soundly or refuse it; and a pool started on such a directory comes up with what the
//! decoders accept and empty state otherwise. Nothing panics.
//!
//! The damage is drawn from a seeded generator; the seed is printed, and
//! `PEERPOOL_TEST_SEED=N` replays a run.

use std::hash::Hasher;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use fastrand::Rng;
use peerpool_core::addr::{Host, NetAddr};
use peerpool_core::pool::addrman::{self, AddrMan, AddrRecord};
use peerpool_core::pool::banman::{BanList, BanReason, Subnet};
use peerpool_core::Time;
use peerpool_net::persist::{self, Corruption, LoadError, HEADER_LEN, MAGIC};
use peerpool_net::pool::{BANS_FILE, PEERS_FILE};
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::*;
use peerpool_testkit::{init_logs, tempdir};

/// The snapshot kinds the pool's store uses for its two files.
const PEERS_KIND: &str = "peers";
const BANS_KIND: &str = "banlist";

/// The seed of this run: `PEERPOOL_TEST_SEED` to replay one, else a random one. Printed, so
/// a failing run shows it.
fn seed() -> u64 {
    let seed = std::env::var("PEERPOOL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("PEERPOOL_TEST_SEED={seed}");
    seed
}

// ----- fixtures ----------------------------------------------------------------------------

/// What the pool loads the address book with (see `peerpool_testkit::pool::pool_config`).
fn addrman_config() -> addrman::Config {
    pool_config(0).machine.addrman
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> NetAddr {
    NetAddr {
        host: Host::Ipv4(Ipv4Addr::new(a, b, c, d)),
        port: 8333,
    }
}

/// A book of about two hundred entries on every network, new and tried, with tried
/// collisions waiting.
fn book() -> AddrMan {
    let mut rng = Rng::with_seed(0xb00c);
    let mut book = AddrMan::new(addrman_config(), *b"store-mutations!", Rng::with_seed(5));
    let now = Time::from_secs(1_750_000_000);
    let mut addrs: Vec<NetAddr> = (0..100u32)
        .map(|i| v4(11 + (i % 90) as u8, (i / 90) as u8 + 1, 2, 3))
        .collect();
    addrs.extend((1..=20u8).map(|i| v4(127, 0, 9, i)));
    addrs.extend((0..20u16).map(|i| NetAddr {
        host: Host::Ipv6(Ipv6Addr::new(0x2a01, 0x4f8, i, 0, 0, 0, 0, 1)),
        port: 8333,
    }));
    for i in 0..30 {
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        addrs.push(NetAddr {
            host: match i % 3 {
                0 => Host::TorV3(key),
                1 => Host::I2p(key),
                _ => Host::Cjdns(Ipv6Addr::from([
                    0xfc, key[1], key[2], key[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, key[4], 1,
                ])),
            },
            port: if i % 3 == 1 { 0 } else { 8333 },
        });
    }
    // One /16 crowding its eight tried buckets, so some promotions collide.
    let crowd: Vec<NetAddr> = (1..=80u8).map(|i| v4(88, 8, 1, i)).collect();
    addrs.extend(&crowd);
    for (i, chunk) in addrs.chunks(8).enumerate() {
        let recs: Vec<AddrRecord> = chunk
            .iter()
            .map(|&a| (a, ServiceFlags::NETWORK, now - Duration::from_secs(600)))
            .collect();
        book.add(&recs, v4(150, i as u8, 1, 1), Duration::ZERO, now);
    }
    for (i, a) in addrs.iter().enumerate() {
        if i % 3 == 0 || crowd.contains(a) {
            book.attempt(a, false, now);
            book.good(a, now);
        } else if i % 3 == 1 {
            book.attempt(a, true, now);
        }
    }
    book
}

/// Bans on every kind of subnet, in force for decades.
fn bans() -> BanList {
    let mut rng = Rng::with_seed(0xba2);
    let now = Time::from_secs(1_750_000_000);
    let until = |rng: &mut Rng| Time::from_secs(4_000_000_000 + rng.u64(..1_000_000));
    let mut list = BanList::new();
    for i in 0..40u8 {
        let prefix = [32, 24, 16, 8][usize::from(i % 4)];
        let subnet = Subnet::new(Ipv4Addr::new(30 + i, i, 1, 2).into(), prefix).unwrap();
        let u = until(&mut rng);
        list.ban(subnet, u, BanReason::Manual, now);
    }
    for i in 0..20u16 {
        let prefix = [128, 64, 48, 32][usize::from(i % 4)];
        let subnet =
            Subnet::new(Ipv6Addr::new(0x2a01, i, 1, 2, 3, 4, 5, 6).into(), prefix).unwrap();
        let u = until(&mut rng);
        list.ban(subnet, u, BanReason::Misbehaviour, now);
    }
    for i in 0..10 {
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let host = if i % 2 == 0 {
            Host::TorV3(key)
        } else {
            Host::I2p(key)
        };
        let u = until(&mut rng);
        list.ban(Subnet::host(host), u, BanReason::Manual, now);
    }
    list
}

// ----- damage ------------------------------------------------------------------------------

/// One to three of: bit flips, byte overwrites, a truncation, an inserted or deleted run, a
/// 4-byte field forged to a huge or edge value, a run copied elsewhere.
fn damage(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..=3) {
        let len = data.len();
        match rng.u8(..7) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                data[i] ^= 1 << rng.u8(..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                let end = (i + rng.usize(1..8)).min(len);
                for b in &mut data[i..end] {
                    *b = rng.u8(..);
                }
            }
            2 => data.truncate(rng.usize(..=len)),
            3 => {
                let i = rng.usize(..=len);
                let run: Vec<u8> = (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect();
                data.splice(i..i, run);
            }
            4 => {
                let i = rng.usize(..=len);
                let end = (i + rng.usize(1..96)).min(len);
                data.drain(i..end);
            }
            5 if len >= 4 => {
                let value = match rng.u8(..4) {
                    0 => u32::MAX,
                    1 => 1 << 31,
                    2 => 0,
                    _ => rng.u32(..),
                };
                let i = rng.usize(..=len - 4);
                data[i..i + 4].copy_from_slice(&value.to_le_bytes());
            }
            6 if len > 0 => {
                let i = rng.usize(..len);
                let run = data[i..(i + rng.usize(1..160)).min(len)].to_vec();
                let j = rng.usize(..=len);
                data.splice(j..j, run);
            }
            _ => data.push(rng.u8(..)),
        }
    }
}

/// Replaces an address book's own trailing checksum (SipHash-2-4 under the zero key of the
/// bytes before it), so damage to its body reaches the field checks behind it.
fn reseal_book(data: &mut Vec<u8>) {
    data.truncate(data.len().saturating_sub(8));
    #[allow(deprecated)] // std's SipHasher is exactly SipHash-2-4, the book's checksum.
    let mut h = std::hash::SipHasher::new_with_keys(0, 0);
    h.write(data);
    let sum = h.finish();
    data.extend_from_slice(&sum.to_le_bytes());
}

fn corrupt_copies(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}.corrupt-"))
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

// ----- what a loaded payload must satisfy --------------------------------------------------

fn assert_sound_book(book: &AddrMan, context: &str) {
    book.check()
        .unwrap_or_else(|e| panic!("{context}: loaded book inconsistent: {e}"));
    assert_eq!(book.entries().count(), book.size(), "{context}");
    assert_eq!(book.counts().total(), book.size(), "{context}");
    let saved = book.serialize();
    let again = AddrMan::deserialize_with(&saved, addrman_config(), Rng::with_seed(1))
        .unwrap_or_else(|e| panic!("{context}: a loaded book does not reload: {e}"));
    assert!(again == *book, "{context}: reloaded book differs");
}

fn assert_sound_bans(list: &BanList, context: &str) {
    assert_eq!(list.iter().count(), list.len(), "{context}");
    let again = BanList::decode(&list.encode())
        .unwrap_or_else(|e| panic!("{context}: a decoded list does not re-decode: {e}"));
    assert_eq!(
        again.iter().collect::<Vec<_>>(),
        list.iter().collect::<Vec<_>>(),
        "{context}"
    );
    assert_eq!(
        list.next_expiry(),
        list.iter().map(|e| e.until).min(),
        "{context}"
    );
}

// ----- tests -------------------------------------------------------------------------------

#[test]
fn the_book_checksum_is_resealed_the_way_the_book_computes_it() {
    let bytes = book().serialize();
    let mut resealed = bytes.clone();
    reseal_book(&mut resealed);
    assert_eq!(resealed, bytes);
    let loaded = AddrMan::deserialize_with(&bytes, addrman_config(), Rng::with_seed(1)).unwrap();
    assert!(loaded.size() >= 150, "{}", loaded.size());
    assert!(loaded.counts().tried > 0 && loaded.tried_collisions().count() > 0);
}

/// Any change to a saved file, header or payload, is corruption: the checksum covers every
/// byte. The file is renamed aside with its bytes intact, and the error names both paths.
#[test]
fn a_damaged_snapshot_file_is_refused_and_set_aside() {
    let mut rng = Rng::with_seed(seed());
    let dir = tempdir!("store-mutations-envelope");
    let payloads = [
        (PEERS_FILE, PEERS_KIND, book().serialize()),
        (BANS_FILE, BANS_KIND, bans().encode()),
    ];
    for round in 0..200 {
        let (name, kind, payload) = &payloads[rng.usize(..payloads.len())];
        let path = dir.join(name);
        persist::save(&path, kind, payload).unwrap();
        let saved = std::fs::read(&path).unwrap();
        let mut damaged = saved.clone();
        damage(&mut rng, &mut damaged);
        std::fs::write(&path, &damaged).unwrap();
        let context = format!(
            "round {round}, {name}, {} -> {} bytes",
            saved.len(),
            damaged.len()
        );

        let result = persist::load(&path, kind);
        if damaged == saved {
            assert_eq!(result.unwrap(), Some(payload.clone()), "{context}");
            continue;
        }
        let err = match result {
            Err(e) => e,
            Ok(found) => panic!(
                "{context}: damaged file accepted ({:?} bytes)",
                found.map(|p| p.len())
            ),
        };
        let message = err.to_string();
        let LoadError::Corrupt { problem, .. } = &err else {
            panic!("{context}: not reported as corruption: {message}");
        };
        if damaged.len() < HEADER_LEN {
            assert_eq!(
                *problem,
                Corruption::TooShort { len: damaged.len() },
                "{context}"
            );
        } else if damaged[..MAGIC.len()] != MAGIC {
            assert_eq!(*problem, Corruption::BadMagic, "{context}");
        }
        let aside = err
            .moved_to()
            .unwrap_or_else(|| panic!("{context}: not moved aside: {message}"))
            .to_owned();
        assert!(
            message.contains(&path.display().to_string()),
            "{context}: {message}"
        );
        assert!(
            message.contains(&aside.display().to_string()),
            "{context}: {message}"
        );
        assert!(!path.exists(), "{context}: still in place");
        assert_eq!(std::fs::read(&aside).unwrap(), damaged, "{context}");
        assert_eq!(corrupt_copies(&dir, name), vec![aside.clone()], "{context}");
        // A first start from here on: nothing to load.
        assert!(persist::load(&path, kind).unwrap().is_none(), "{context}");
        std::fs::remove_file(&aside).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A damaged payload saved with a valid envelope passes the file checks and reaches its
/// decoder, which either loads a sound structure or refuses it; a refused file is set aside
/// as the pool's store does.
#[test]
fn a_damaged_payload_in_a_sound_envelope_reaches_its_decoder() {
    let mut rng = Rng::with_seed(seed());
    let dir = tempdir!("store-mutations-payload");
    let book_bytes = book().serialize();
    let ban_bytes = bans().encode();
    let (mut loaded, mut refused) = (0, 0);
    for round in 0..300 {
        let peers = rng.bool();
        let (name, kind, original) = if peers {
            (PEERS_FILE, PEERS_KIND, &book_bytes)
        } else {
            (BANS_FILE, BANS_KIND, &ban_bytes)
        };
        let mut payload = original.clone();
        damage(&mut rng, &mut payload);
        if peers && rng.u8(..4) != 0 {
            reseal_book(&mut payload);
        }
        let path = dir.join(name);
        persist::save(&path, kind, &payload).unwrap();
        let context = format!("round {round}, {name}, {} bytes", payload.len());
        let found = persist::load(&path, kind)
            .unwrap_or_else(|e| panic!("{context}: sound envelope refused: {e}"))
            .unwrap_or_else(|| panic!("{context}: saved file not found"));
        assert_eq!(found, payload, "{context}");

        let problem = if peers {
            match AddrMan::deserialize_with(&found, addrman_config(), Rng::with_seed(round)) {
                Ok(book) => {
                    assert_sound_book(&book, &context);
                    None
                }
                Err(e) => Some(e.to_string()),
            }
        } else {
            match BanList::decode(&found) {
                Ok(list) => {
                    assert_sound_bans(&list, &context);
                    None
                }
                Err(e) => Some(e.to_string()),
            }
        };
        match problem {
            None => loaded += 1,
            Some(problem) => {
                refused += 1;
                assert!(!problem.is_empty(), "{context}");
                let aside = persist::move_aside(&path).unwrap();
                assert!(!path.exists(), "{context}");
                let kept = std::fs::read(&aside).unwrap();
                assert_eq!(&kept[HEADER_LEN..], &payload[..], "{context}");
                std::fs::remove_file(&aside).unwrap();
            }
        }
    }
    println!("{loaded} damaged payloads loaded, {refused} refused");
    assert!(refused > 0, "no damage was refused");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A pool started on a data directory holding damaged but sound-enveloped files starts with
/// exactly what the decoders accept, sets aside what they refuse, and is unharmed either way.
#[tokio::test(flavor = "multi_thread")]
async fn a_pool_starts_on_damaged_state_files() {
    init_logs();
    let mut rng = Rng::with_seed(seed());
    let book_bytes = book().serialize();
    let ban_bytes = bans().encode();
    for round in 0..6u8 {
        let dir = tempdir!(&format!("store-mutations-pool-{round}"));
        let mut peers = book_bytes.clone();
        // The first round keeps the book whole, so a pool that ignored its files would fail.
        if round > 0 {
            damage(&mut rng, &mut peers);
            if rng.u8(..4) != 0 {
                reseal_book(&mut peers);
            }
        }
        let mut banlist = ban_bytes.clone();
        if round > 0 {
            damage(&mut rng, &mut banlist);
        }
        persist::save(&dir.join(PEERS_FILE), PEERS_KIND, &peers).unwrap();
        persist::save(&dir.join(BANS_FILE), BANS_KIND, &banlist).unwrap();
        let want_book = AddrMan::deserialize_with(&peers, addrman_config(), Rng::with_seed(1))
            .ok()
            .map(|b| b.counts());
        let want_bans = BanList::decode(&banlist).ok();
        let context = format!(
            "round {round}: book {}, bans {}",
            if want_book.is_some() {
                "sound"
            } else {
                "refused"
            },
            if want_bans.is_some() {
                "sound"
            } else {
                "refused"
            },
        );

        let mut config = pool_config(0);
        config.data_dir = Some(dir.clone());
        let pool = start(SocketAddr::from((ip(70 + round, 1), 0)), config, "m").await;
        let info = pool.handle().addrman_info().await.unwrap();
        assert_eq!(info.total, want_book.unwrap_or_default(), "{context}");
        assert_eq!(
            corrupt_copies(&dir, PEERS_FILE).len(),
            usize::from(want_book.is_none()),
            "{context}"
        );
        let listed = pool.handle().list_bans().await.unwrap();
        let now = peerpool_net::clock::now();
        match &want_bans {
            Some(list) => {
                for b in &listed {
                    assert_eq!(list.get(&b.subnet), Some(b), "{context}");
                }
                // Everything that is still in force an hour from now is listed.
                let lasting = list
                    .iter()
                    .filter(|e| e.until > now + Duration::from_secs(3600))
                    .count();
                assert!(
                    listed.len() >= lasting,
                    "{context}: {} < {lasting}",
                    listed.len()
                );
                assert!(corrupt_copies(&dir, BANS_FILE).is_empty(), "{context}");
            }
            None => {
                assert!(listed.is_empty(), "{context}");
                assert_eq!(corrupt_copies(&dir, BANS_FILE).len(), 1, "{context}");
            }
        }
        // The pool still works: it takes new addresses and saves them at shutdown.
        let added = pool
            .handle()
            .add_addresses(vec![v4(127, 0, 99, 1)])
            .await
            .unwrap();
        pool.stop().await;
        let saved = persist::load(&dir.join(PEERS_FILE), PEERS_KIND)
            .unwrap()
            .expect("saved at shutdown");
        let reloaded = AddrMan::deserialize_with(&saved, addrman_config(), Rng::with_seed(1))
            .unwrap_or_else(|e| panic!("{context}: the pool saved a book it cannot read: {e}"));
        assert_sound_book(&reloaded, &context);
        if added > 0 {
            assert!(reloaded.info(&v4(127, 0, 99, 1)).is_some(), "{context}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
