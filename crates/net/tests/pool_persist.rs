//! The pool's address book and ban list across restarts: saved at shutdown and periodically,
//! loaded at start, and damaged files set aside without stopping the start.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use peerpool_core::addr::NetAddr;
use peerpool_core::pool::addrman::{self, AddrMan};
use peerpool_core::pool::banman::BanList;
use peerpool_net::persist;
use peerpool_net::pool::{Subnet, BANS_FILE, PEERS_FILE};
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::*;
use peerpool_testkit::{init_logs, tempdir, within};

fn addrs(net: u8, n: u8) -> Vec<NetAddr> {
    (1..=n)
        .map(|i| NetAddr::from_socket(SocketAddr::from((ip(net, i), 18444))))
        .collect()
}

/// Entries in the address book saved in `dir`, if it holds a readable one.
fn saved_book_size(dir: &Path) -> Option<usize> {
    let bytes = persist::load(&dir.join(PEERS_FILE), "peers").ok()??;
    let config = addrman::Config {
        allow_local: true,
        ..addrman::Config::default()
    };
    AddrMan::deserialize_with(&bytes, config, fastrand::Rng::with_seed(1))
        .ok()
        .map(|b| b.size())
}

/// Bans in the ban list saved in `dir`, if it holds a readable one.
fn saved_ban_count(dir: &Path) -> Option<usize> {
    let bytes = persist::load(&dir.join(BANS_FILE), "banlist").ok()??;
    BanList::decode(&bytes).ok().map(|b| b.len())
}

fn set_aside(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}.corrupt-")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_the_address_book_and_the_bans() {
    init_logs();
    let dir = tempdir!("restart");
    let mut config = pool_config(0);
    config.data_dir = Some(dir.clone());
    let bind = SocketAddr::from((ip(20, 1), 0));
    let a = start(bind, config.clone(), "a").await;
    // Two of them may share a slot of the keyed tables and one not be kept: count what is.
    a.handle().add_addresses(addrs(21, 30)).await.unwrap();
    let kept = a.handle().addrman_info().await.unwrap().total.total();
    assert!(kept >= 28, "{kept}");
    let subnet: Subnet = "10.1.0.0/16".parse().unwrap();
    a.handle()
        .ban(subnet, Duration::from_secs(3600))
        .await
        .unwrap();
    a.stop().await;
    assert!(dir.join(PEERS_FILE).exists() && dir.join(BANS_FILE).exists());

    let a = start(bind, config, "a").await;
    let info = a.handle().addrman_info().await.unwrap();
    assert_eq!(info.total.total(), kept, "{info:?}");
    let bans = a.handle().list_bans().await.unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].subnet, subnet);
    a.stop().await;
}

#[test]
fn a_killed_pool_loses_at_most_the_last_save_interval() {
    init_logs();
    let dir = tempdir!("killed");
    let mut config = pool_config(0);
    config.data_dir = Some(dir.clone());
    config.save_interval = Duration::from_millis(200);
    let bind = SocketAddr::from((ip(22, 1), 0));

    // A pool in a runtime of its own, dropped without any shutdown: as good as kill -9.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kept = rt.block_on(async {
        let a = start(bind, config.clone(), "a").await;
        a.handle().add_addresses(addrs(23, 12)).await.unwrap();
        let kept = a.handle().addrman_info().await.unwrap().total.total();
        a.handle()
            .ban("10.2.0.0/16".parse().unwrap(), Duration::from_secs(3600))
            .await
            .unwrap();
        // Wait for a periodic save to carry the book and the ban (polling the files, not
        // timing it). A save may fall between the two changes, and a save writes the book
        // before the bans, so both files are checked.
        within("a periodic save", async {
            while saved_book_size(&dir) != Some(kept) || saved_ban_count(&dir) != Some(1) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        std::mem::forget(a);
        kept
    });
    rt.shutdown_background();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = start(bind, config, "a").await;
        assert_eq!(a.handle().addrman_info().await.unwrap().total.total(), kept);
        assert_eq!(a.handle().list_bans().await.unwrap().len(), 1);
        a.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_files_are_set_aside_and_the_pool_starts_empty() {
    init_logs();
    let dir = tempdir!("corrupt");
    // Not a snapshot at all.
    std::fs::write(dir.join(PEERS_FILE), b"this is not an address book").unwrap();
    // A sound snapshot whose content the ban list decoder refuses.
    persist::save(&dir.join(BANS_FILE), "banlist", &[9, 9, 9]).unwrap();

    let mut config = pool_config(0);
    config.data_dir = Some(dir.clone());
    let a = start(SocketAddr::from((ip(24, 1), 0)), config.clone(), "a").await;
    assert_eq!(a.handle().addrman_info().await.unwrap().total.total(), 0);
    assert!(a.handle().list_bans().await.unwrap().is_empty());
    assert_eq!(set_aside(&dir, PEERS_FILE).len(), 1);
    assert_eq!(set_aside(&dir, BANS_FILE).len(), 1);
    a.handle().add_addresses(addrs(25, 3)).await.unwrap();
    let kept = a.handle().addrman_info().await.unwrap().total.total();
    assert!(kept > 0);
    a.stop().await;

    // The next start finds good files again; the damaged ones stay put for a post-mortem.
    assert_eq!(saved_book_size(&dir), Some(kept));
    let a = start(SocketAddr::from((ip(24, 1), 0)), config, "a").await;
    assert_eq!(a.handle().addrman_info().await.unwrap().total.total(), kept);
    a.stop().await;
    assert_eq!(set_aside(&dir, PEERS_FILE).len(), 1);

    // A truncated book (a copy cut short, say) is refused the same way.
    let full = std::fs::read(dir.join(PEERS_FILE)).unwrap();
    std::fs::write(dir.join(PEERS_FILE), &full[..full.len() / 2]).unwrap();
    let mut config = pool_config(0);
    config.data_dir = Some(dir.clone());
    let a = start(SocketAddr::from((ip(24, 1), 0)), config, "a").await;
    assert_eq!(a.handle().addrman_info().await.unwrap().total.total(), 0);
    assert_eq!(set_aside(&dir, PEERS_FILE).len(), 2);
    a.stop().await;
}
