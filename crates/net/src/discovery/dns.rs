//! DNS seeding: the first addresses of a node that knows no peer yet.
//!
//! A chain names a few DNS seeds ([`ChainParams::dns_seeds`]); each answers a query for its name
//! with A and AAAA records of nodes it has recently seen working. Every answer becomes a peer
//! address on the chain's default port, as in Bitcoin Core's `ThreadDNSAddressSeed`.
//!
//! [`SeedResolver`] queries all seeds at once, each lookup under its own timeout. A seed that
//! fails (no such name, no answer, a server failure) is reported and skipped: the others still
//! count. Addresses are deduplicated across seeds.
//!
//! Where the queries go is chosen when the resolver is built: the system's resolver
//! configuration ([`SeedResolver::system`]), one given nameserver ([`SeedResolver::with_nameserver`],
//! which is how tests point it at a server on loopback), or a Tor proxy
//! ([`SeedResolver::via_tor`]), so that a node told to use a proxy sends no DNS query of its own.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use peerpool_core::addr::NetAddr;
use peerpool_wire::ChainParams;
use tokio::task::JoinSet;
use tracing::debug;

use super::socks::{resolve_via_tor, ProxyError};

/// Default time allowed for one seed's lookup (A and AAAA together). The `resolv.conf` default
/// per-query timeout: a seed that has not answered by then is treated as down.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Most addresses taken from one seed's answer. Bitcoin Core: `nMaxIPs` in
/// `ThreadDNSAddressSeed` (256).
pub const MAX_ADDRS_PER_SEED: usize = 256;

/// Why one seed gave no addresses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    /// The name does not exist (NXDOMAIN).
    #[error("no such name")]
    NoSuchName,
    /// The name exists but has no A or AAAA records.
    #[error("no A or AAAA records")]
    NoAddresses,
    /// No answer within the lookup timeout.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The name is not a valid DNS name.
    #[error("invalid seed name: {0}")]
    InvalidName(String),
    /// Any other resolver failure (server failure, refused, malformed answer, I/O).
    #[error("lookup failed: {0}")]
    Resolve(String),
    /// The lookup through the proxy failed (see [`ProxyError`]).
    #[error("lookup through the proxy failed: {0}")]
    Proxy(String),
    /// The system's resolver configuration could not be read.
    #[error("cannot read the system's DNS configuration: {0}")]
    SystemConfig(String),
}

/// The outcome of querying a chain's seeds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Every address any seed answered with, each once, in the order first seen (seeds in
    /// their given order).
    pub addrs: Vec<NetAddr>,
    /// Per seed, in the given order: the name queried and how many distinct addresses it
    /// answered with (some may also have come from other seeds), or why it gave none.
    pub per_seed: Vec<(String, Result<usize, SeedError>)>,
}

impl SeedReport {
    /// How many seeds answered with at least one address.
    pub fn seeds_answered(&self) -> usize {
        self.per_seed
            .iter()
            .filter(|(_, r)| matches!(r, Ok(n) if *n > 0))
            .count()
    }
}

/// Where lookups go.
#[derive(Clone, Debug)]
enum Backend {
    Dns(Box<Dns>),
    Tor { proxy: SocketAddr },
}

/// A DNS resolver, and what it was built from so a new timeout can rebuild it.
#[derive(Clone, Debug)]
struct Dns {
    config: ResolverConfig,
    opts: ResolverOpts,
    resolver: TokioResolver,
}

/// One seed's lookup: the name queried and its answer.
type Answer = (String, Result<Vec<IpAddr>, SeedError>);

/// Resolves DNS seed names to peer addresses; see the module docs.
///
/// Cheap to clone: clones share the DNS cache.
#[derive(Clone, Debug)]
pub struct SeedResolver {
    backend: Backend,
    timeout: Duration,
    service_filter: Option<ServiceFlags>,
}

impl SeedResolver {
    /// Queries the nameservers of the system's configuration (`/etc/resolv.conf` on Unix).
    pub fn system() -> Result<SeedResolver, SeedError> {
        let (config, mut opts) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| SeedError::SystemConfig(e.to_string()))?;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        Ok(SeedResolver::build(config, opts, DEFAULT_LOOKUP_TIMEOUT))
    }

    /// Queries only the nameserver at `server` (UDP, falling back to TCP for truncated
    /// answers), ignoring the system's configuration and hosts file.
    pub fn with_nameserver(server: SocketAddr) -> SeedResolver {
        let servers = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);
        let mut opts = ResolverOpts::default();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.use_hosts_file = ResolveHosts::Never;
        // One server and a hard timeout of our own: retrying inside it would only split it.
        opts.attempts = 1;
        SeedResolver::build(config, opts, DEFAULT_LOOKUP_TIMEOUT)
    }

    /// Sends every lookup through the Tor SOCKS proxy at `proxy` (Tor's `RESOLVE`
    /// extension), so no DNS query leaves this host. Tor answers one address per name.
    pub fn via_tor(proxy: SocketAddr) -> SeedResolver {
        SeedResolver {
            backend: Backend::Tor { proxy },
            timeout: DEFAULT_LOOKUP_TIMEOUT,
            service_filter: None,
        }
    }

    /// The same resolver with `timeout` for each seed's lookup instead of
    /// [`DEFAULT_LOOKUP_TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> SeedResolver {
        match self.backend {
            Backend::Dns(dns) => SeedResolver {
                service_filter: self.service_filter,
                ..SeedResolver::build(dns.config, dns.opts, timeout)
            },
            Backend::Tor { .. } => SeedResolver { timeout, ..self },
        }
    }

    /// The same resolver asking seeds only for nodes offering `services`, by querying
    /// `x<hex flags>.<seed>` instead of the seed's name (Bitcoin Core queries `x9.<seed>` for
    /// `NODE_NETWORK | NODE_WITNESS`). Only for seeds known to support the prefix: others
    /// answer NXDOMAIN.
    pub fn with_service_filter(self, services: ServiceFlags) -> SeedResolver {
        SeedResolver {
            service_filter: Some(services),
            ..self
        }
    }

    /// The timeout of one seed's lookup.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn build(config: ResolverConfig, mut opts: ResolverOpts, timeout: Duration) -> SeedResolver {
        opts.timeout = timeout;
        let resolver =
            TokioResolver::builder_with_config(config.clone(), TokioConnectionProvider::default())
                .with_options(opts.clone())
                .build();
        SeedResolver {
            backend: Backend::Dns(Box::new(Dns {
                config,
                opts,
                resolver,
            })),
            timeout,
            service_filter: None,
        }
    }

    /// Queries every DNS seed of `chain`; addresses get the chain's default port.
    pub async fn resolve_chain(&self, chain: &ChainParams) -> SeedReport {
        self.resolve(&chain.dns_seeds, chain.default_port).await
    }

    /// Queries every name in `seeds` at once; addresses get `port`.
    pub async fn resolve(&self, seeds: &[String], port: u16) -> SeedReport {
        let mut tasks = JoinSet::new();
        for (i, seed) in seeds.iter().enumerate() {
            let me = self.clone();
            let name = self.query_name(seed);
            tasks.spawn(async move {
                let r = me.lookup(&name).await;
                (i, name, r)
            });
        }
        let mut results: Vec<Option<Answer>> = vec![None; seeds.len()];
        // A lookup task only fails by panicking, on a bug in the resolver: its slot stays
        // empty and that seed is reported as failed, the others still count.
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, name, r)) = joined {
                results[i] = Some((name, r));
            }
        }

        let mut report = SeedReport::default();
        let mut seen = HashSet::new();
        for (seed, slot) in seeds.iter().zip(results) {
            let (name, result) = slot.unwrap_or_else(|| {
                (
                    self.query_name(seed),
                    Err(SeedError::Resolve("lookup task panicked".into())),
                )
            });
            let result = result.map(|ips| {
                let mut mine = HashSet::new();
                for ip in ips.into_iter().take(MAX_ADDRS_PER_SEED) {
                    let addr = NetAddr::from_socket(SocketAddr::new(ip, port));
                    if mine.insert(addr) && seen.insert(addr) {
                        report.addrs.push(addr);
                    }
                }
                mine.len()
            });
            match &result {
                Ok(n) => debug!(seed = %name, "{n} addresses"),
                Err(e) => debug!(seed = %name, "no addresses: {e}"),
            }
            report.per_seed.push((name, result));
        }
        report
    }

    /// Looks one name up (A and AAAA), under the lookup timeout. An IP address in text is
    /// returned as it is.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, SeedError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match &self.backend {
            Backend::Dns(dns) => {
                // A trailing dot keeps the system's search domains out of it: a seed name is
                // always complete.
                let mut name = Name::from_ascii(host)
                    .map_err(|e| SeedError::InvalidName(format!("{host:?}: {e}")))?;
                name.set_fqdn(true);
                match tokio::time::timeout(self.timeout, dns.resolver.lookup_ip(name)).await {
                    Err(_) => Err(SeedError::TimedOut(self.timeout)),
                    Ok(Err(e)) => Err(self.classify(&e)),
                    Ok(Ok(answer)) => {
                        let ips: Vec<IpAddr> = answer.iter().collect();
                        if ips.is_empty() {
                            Err(SeedError::NoAddresses)
                        } else {
                            Ok(ips)
                        }
                    }
                }
            }
            Backend::Tor { proxy } => {
                resolve_via_tor(*proxy, host, self.timeout)
                    .await
                    .map_err(|e| match ProxyError::from_io(&e) {
                        Some(ProxyError::TimedOut(t)) => SeedError::TimedOut(*t),
                        _ => SeedError::Proxy(e.to_string()),
                    })
            }
        }
    }

    fn query_name(&self, seed: &str) -> String {
        match self.service_filter {
            Some(flags) => format!("x{:x}.{seed}", flags.to_u64()),
            None => seed.to_owned(),
        }
    }

    fn classify(&self, e: &ResolveError) -> SeedError {
        if e.is_nx_domain() {
            return SeedError::NoSuchName;
        }
        if e.is_no_records_found() {
            return SeedError::NoAddresses;
        }
        match e.proto().map(|p| p.kind()) {
            Some(ProtoErrorKind::Timeout) => SeedError::TimedOut(self.timeout),
            _ => SeedError::Resolve(e.to_string()),
        }
    }
}
