//! A tiny authoritative DNS server over UDP on 127.0.0.1.
//!
//! It knows a fixed zone: a name in the zone gets its A or AAAA records (an empty answer,
//! NODATA, when it has none of the asked type); a name outside it gets NXDOMAIN; a name marked
//! [`Zone::black_hole`] gets no answer at all, like a seed that is down. Every question is
//! logged so a test can check what was asked.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

/// TTL of every answer, in seconds.
const TTL: u32 = 60;

/// The names the server answers for.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    records: HashMap<String, Vec<IpAddr>>,
    silent: HashSet<String>,
}

impl Zone {
    pub fn new() -> Zone {
        Zone::default()
    }

    /// `name` (no trailing dot) resolves to `ips`; an empty list makes a name with no address
    /// records.
    pub fn with(mut self, name: &str, ips: &[&str]) -> Zone {
        let ips = ips.iter().map(|s| s.parse().expect("test IP")).collect();
        self.records.insert(key(name), ips);
        self
    }

    /// Questions about `name` are never answered.
    pub fn black_hole(mut self, name: &str) -> Zone {
        self.silent.insert(key(name));
        self
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A running server.
pub struct DnsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    questions: Arc<Mutex<Vec<(String, RecordType)>>>,
}

impl DnsServer {
    /// Starts a server for `zone` on 127.0.0.1 with a port from the OS. It runs until the
    /// test's runtime ends.
    pub async fn start(zone: Zone) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind DNS socket");
        let addr = socket.local_addr().expect("DNS socket address");
        let questions = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&questions);
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(reply) = answer(&zone, &buf[..n], &log) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        DnsServer { addr, questions }
    }

    /// The (name, type) questions received so far, names without the trailing dot.
    pub fn questions(&self) -> Vec<(String, RecordType)> {
        self.questions.lock().unwrap().clone()
    }
}

/// The reply to one query, or `None` to stay silent (unparsable input or a black-holed name).
fn answer(zone: &Zone, packet: &[u8], log: &Mutex<Vec<(String, RecordType)>>) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let question = query.queries().first()?.clone();
    let name = key(&question.name().to_ascii());
    log.lock()
        .unwrap()
        .push((name.clone(), question.query_type()));
    if zone.silent.contains(&name) {
        return None;
    }

    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_authoritative(true)
        .set_recursion_desired(query.recursion_desired())
        .add_query(question.clone());
    match zone.records.get(&name) {
        None => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        Some(ips) => {
            for ip in ips {
                let rdata = match (ip, question.query_type()) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                    _ => continue,
                };
                reply.add_answer(Record::from_rdata(question.name().clone(), TTL, rdata));
            }
        }
    }
    reply.to_vec().ok()
}

/// A UDP socket on 127.0.0.1 that receives queries and never answers: a dead nameserver.
/// Keep it alive for as long as it should swallow queries.
pub async fn silent_nameserver() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind silent DNS socket")
}
