//! Benchmarks of the address book.
//!
//! Run with `cargo bench -p peerpool-core --bench addrman`. What they answer:
//! - how many gossiped addresses per second `add` takes, into an empty book and into a full one
//!   (where most are refused after the slot check), in `addr`-message batches of 1000;
//! - how many `select` calls per second a full book and a sparse one answer;
//! - how long a `getaddr` answer (1000 addresses) takes from a full book;
//! - how much heap a full book holds: printed once before the timings, both as the book
//!   computes it (`AddrMan::heap_size`) and as measured by a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fastrand::Rng;
use peerpool_core::addr::{Host, NetAddr};
use peerpool_core::gossip::MAX_ADDR_TO_SEND;
use peerpool_core::pool::addrman::{AddrMan, AddrRecord, Config, NEW_CAPACITY, TRIED_CAPACITY};
use peerpool_core::pool::relay::MAX_PCT_ADDR_TO_SEND;
use peerpool_core::Time;

/// Counts live heap bytes, to measure what a full book retains.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counter is only arithmetic on the sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const NOW: Time = Time::from_secs(1_700_000_000);
const KEY: [u8; 16] = [0x5a; 16];
const BATCH: usize = 1000;

/// A routable IPv4 address drawn from `rng`.
fn random_addr(rng: &mut Rng) -> NetAddr {
    loop {
        let a = NetAddr {
            host: Host::Ipv4(Ipv4Addr::from(rng.u32(..))),
            port: 8333,
        };
        if a.is_routable() {
            return a;
        }
    }
}

fn batch(rng: &mut Rng) -> Vec<AddrRecord> {
    (0..BATCH)
        .map(|_| {
            (
                random_addr(rng),
                ServiceFlags::NETWORK,
                NOW - Duration::from_secs(3600),
            )
        })
        .collect()
}

/// A book with both tables filled as far as gossip and connections can fill them: fresh
/// addresses (one reference each) from random sources until the new table stops growing, and
/// successful connections until every tried slot is taken.
fn fill(book: &mut AddrMan, rng: &mut Rng) {
    // Tried first: each `good` moves an entry whose tried slot is still free.
    let mut stalls = 0;
    while book.counts().tried < TRIED_CAPACITY && stalls < 200 {
        let before = book.counts().tried;
        let recs = batch(rng);
        book.add(&recs, random_addr(rng), Duration::ZERO, NOW);
        // Connected to a day ago, so that tried entries carry no "tried recently" penalty.
        for r in &recs {
            book.good(&r.0, NOW - Duration::from_secs(86_400));
        }
        stalls = if book.counts().tried == before {
            stalls + 1
        } else {
            0
        };
    }
    let mut stalls = 0;
    while book.counts().new < NEW_CAPACITY && stalls < 200 {
        let before = book.counts().new;
        book.add(&batch(rng), random_addr(rng), Duration::ZERO, NOW);
        stalls = if book.counts().new == before {
            stalls + 1
        } else {
            0
        };
    }
}

fn full_book() -> &'static AddrMan {
    static FULL: OnceLock<AddrMan> = OnceLock::new();
    FULL.get_or_init(|| {
        let mut rng = Rng::with_seed(1);
        let mut book = AddrMan::new(Config::default(), KEY, Rng::with_seed(2));
        fill(&mut book, &mut rng);
        book
    })
}

fn memory(_: &mut Criterion) {
    let before = LIVE.load(Ordering::Relaxed);
    let book = full_book();
    let measured = LIVE.load(Ordering::Relaxed) - before;
    let c = book.counts();
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!(
        "addrman/memory: full book: {} new (of {NEW_CAPACITY}) + {} tried (of {TRIED_CAPACITY}) \
         entries; heap_size() = {} bytes ({:.1} MiB); counting allocator = {} bytes ({:.1} MiB); \
         {:.0} bytes per entry",
        c.new,
        c.tried,
        book.heap_size(),
        mib(book.heap_size()),
        measured,
        mib(measured),
        measured as f64 / c.total() as f64,
    );
    let empty_before = LIVE.load(Ordering::Relaxed);
    let empty = AddrMan::new(Config::default(), KEY, Rng::with_seed(2));
    let empty_bytes = LIVE.load(Ordering::Relaxed) - empty_before;
    println!(
        "addrman/memory: empty book: heap_size() = {} bytes; counting allocator = {} bytes",
        empty.heap_size(),
        empty_bytes
    );
}

fn add(c: &mut Criterion) {
    let mut g = c.benchmark_group("addrman/add");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut rng = Rng::with_seed(3);
    g.bench_function("empty book, 1000 addresses", |b| {
        b.iter_batched(
            || {
                (
                    AddrMan::new(Config::default(), KEY, Rng::with_seed(4)),
                    batch(&mut rng),
                    random_addr(&mut rng),
                )
            },
            |(mut book, recs, src)| {
                black_box(book.add(&recs, src, Duration::ZERO, NOW));
                book
            },
            BatchSize::LargeInput,
        )
    });
    let mut full = full_book().clone();
    g.bench_function("full book, 1000 addresses", |b| {
        b.iter_batched(
            || (batch(&mut rng), random_addr(&mut rng)),
            |(recs, src)| black_box(full.add(&recs, src, Duration::ZERO, NOW)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn select(c: &mut Criterion) {
    let mut g = c.benchmark_group("addrman/select");
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng::with_seed(5);
    let mut full = full_book().clone();
    g.bench_function("full book", |b| {
        b.iter(|| black_box(full.select(false, &[], &mut rng, NOW)))
    });
    g.bench_function("full book, new only", |b| {
        b.iter(|| black_box(full.select(true, &[], &mut rng, NOW)))
    });
    let mut sparse = AddrMan::new(Config::default(), KEY, Rng::with_seed(6));
    for r in batch(&mut rng) {
        sparse.add(&[r], random_addr(&mut rng), Duration::ZERO, NOW);
    }
    g.bench_function("sparse book, ~1000 new entries", |b| {
        b.iter(|| black_box(sparse.select(false, &[], &mut rng, NOW)))
    });
    g.finish();

    let mut g = c.benchmark_group("addrman/get_addr");
    g.throughput(Throughput::Elements(MAX_ADDR_TO_SEND as u64));
    g.bench_function("full book, 1000 addresses", |b| {
        b.iter(|| {
            black_box(full.get_addr(MAX_ADDR_TO_SEND, MAX_PCT_ADDR_TO_SEND, None, &mut rng, NOW))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = memory, add, select
}
criterion_main!(benches);
