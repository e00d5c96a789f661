//! SOCKS5 servers for the proxy tests.
//!
//! - [`FakeSocks`]: a scriptable server written here. It speaks just enough SOCKS5 (no-auth
//!   and username/password, `CONNECT`, and Tor's `RESOLVE`, command 0xF0) and reports every
//!   request it parsed, so a test can check the exact bytes a client chose (domain-name form
//!   for `.onion`, the credentials sent). A successful `CONNECT` turns the connection into an
//!   echo.
//! - [`Microsocks`]: the real `microsocks` server from Debian, started by the test on a free
//!   loopback port and killed when dropped.
//! - [`mute_server`] and [`garbage_server`]: proxies that never answer and that answer
//!   nonsense.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;
const NO_METHOD: u8 = 0xff;
const CMD_CONNECT: u8 = 0x01;
const CMD_RESOLVE: u8 = 0xf0;
const REPLY_OK: u8 = 0x00;
const REPLY_HOST_UNREACHABLE: u8 = 0x04;
const REPLY_CMD_UNSUPPORTED: u8 = 0x07;

/// The target of a request as it came over the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Address type 1 or 4.
    Ip(SocketAddr),
    /// Address type 3: a name for the proxy to resolve.
    Domain(String, u16),
}

/// One request the fake server parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The command byte (0x01 CONNECT, 0xF0 RESOLVE, ...).
    pub cmd: u8,
    /// Where to.
    pub target: Target,
    /// Username and password, if the client authenticated.
    pub auth: Option<(String, String)>,
}

/// How the fake server behaves.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Insist on username/password authentication.
    pub require_auth: bool,
    /// A password to refuse.
    pub refused_password: Option<String>,
    /// Reply code for CONNECT; 0 makes the stream an echo afterwards.
    pub connect_reply: u8,
    /// Names that RESOLVE knows; others get "host unreachable", as Tor answers.
    pub names: HashMap<String, IpAddr>,
}

/// A running fake server.
pub struct FakeSocks {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Request>,
}

impl FakeSocks {
    /// Starts a server following `script` on 127.0.0.1 with a port from the OS.
    pub async fn start(script: Script) -> FakeSocks {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake proxy");
        let addr = listener.local_addr().expect("fake proxy address");
        let (tx, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, tx) = (script.clone(), tx.clone());
                tokio::spawn(async move {
                    // A client that hangs up early is part of some tests; nothing to report.
                    let _ = serve(stream, &script, &tx).await;
                });
            }
        });
        FakeSocks { addr, requests }
    }

    /// The next request the server parsed (waits for it).
    pub async fn next_request(&mut self) -> Request {
        self.requests.recv().await.expect("fake proxy stopped")
    }
}

async fn serve(
    mut s: TcpStream,
    script: &Script,
    requests: &mpsc::UnboundedSender<Request>,
) -> io::Result<()> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Ok(());
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await?;

    let wanted = if script.require_auth {
        USER_PASS
    } else {
        NO_AUTH
    };
    if !methods.contains(&wanted) {
        s.write_all(&[VERSION, NO_METHOD]).await?;
        return Ok(());
    }
    s.write_all(&[VERSION, wanted]).await?;
    let auth = if wanted == USER_PASS {
        let (user, pass) = read_user_pass(&mut s).await?;
        if script.refused_password.as_deref() == Some(pass.as_str()) {
            s.write_all(&[1, 1]).await?;
            return Ok(());
        }
        s.write_all(&[1, 0]).await?;
        Some((user, pass))
    } else {
        None
    };

    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    let target = read_target(&mut s, req[3]).await?;
    let request = Request {
        cmd: req[1],
        target: target.clone(),
        auth,
    };
    let _ = requests.send(request);

    match req[1] {
        CMD_CONNECT => {
            reply(&mut s, script.connect_reply, None).await?;
            if script.connect_reply == REPLY_OK {
                let (mut r, mut w) = s.split();
                tokio::io::copy(&mut r, &mut w).await?;
            }
        }
        CMD_RESOLVE => {
            let found = match &target {
                Target::Domain(name, _) => script.names.get(name).copied(),
                Target::Ip(sa) => Some(sa.ip()),
            };
            match found {
                Some(ip) => reply(&mut s, REPLY_OK, Some(ip)).await?,
                None => reply(&mut s, REPLY_HOST_UNREACHABLE, None).await?,
            }
        }
        _ => reply(&mut s, REPLY_CMD_UNSUPPORTED, None).await?,
    }
    Ok(())
}

async fn read_user_pass(s: &mut TcpStream) -> io::Result<(String, String)> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b).await?; // sub-negotiation version, username length
    let mut user = vec![0u8; usize::from(b[1])];
    s.read_exact(&mut user).await?;
    let mut len = [0u8; 1];
    s.read_exact(&mut len).await?;
    let mut pass = vec![0u8; usize::from(len[0])];
    s.read_exact(&mut pass).await?;
    Ok((
        String::from_utf8_lossy(&user).into_owned(),
        String::from_utf8_lossy(&pass).into_owned(),
    ))
}

async fn read_target(s: &mut TcpStream, atyp: u8) -> io::Result<Target> {
    let target = match atyp {
        1 => {
            let mut b = [0u8; 6];
            s.read_exact(&mut b).await?;
            let ip = IpAddr::from([b[0], b[1], b[2], b[3]]);
            Target::Ip(SocketAddr::new(ip, u16::from_be_bytes([b[4], b[5]])))
        }
        4 => {
            let mut b = [0u8; 18];
            s.read_exact(&mut b).await?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[..16]);
            Target::Ip(SocketAddr::new(
                IpAddr::from(ip),
                u16::from_be_bytes([b[16], b[17]]),
            ))
        }
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0]) + 2];
            s.read_exact(&mut name).await?;
            let port = u16::from_be_bytes([name[name.len() - 2], name[name.len() - 1]]);
            name.truncate(name.len() - 2);
            Target::Domain(String::from_utf8_lossy(&name).into_owned(), port)
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("address type {other}"),
            ))
        }
    };
    Ok(target)
}

/// Sends a reply; the bound address is `ip` (port 0) or 0.0.0.0:0.
async fn reply(s: &mut TcpStream, code: u8, ip: Option<IpAddr>) -> io::Result<()> {
    let mut out = vec![VERSION, code, 0];
    match ip {
        Some(IpAddr::V6(v6)) => {
            out.push(4);
            out.extend_from_slice(&v6.octets());
        }
        Some(IpAddr::V4(v4)) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        None => out.extend_from_slice(&[1, 0, 0, 0, 0]),
    }
    out.extend_from_slice(&[0, 0]);
    s.write_all(&out).await
}

/// A listener that accepts connections and never says a word: a hung proxy.
pub async fn mute_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mute proxy");
    let addr = listener.local_addr().expect("mute proxy address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// A listener that answers every connection with an HTTP error: not a SOCKS proxy at all.
pub async fn garbage_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind garbage proxy");
    let addr = listener.local_addr().expect("garbage proxy address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut greeting = [0u8; 3];
                let _ = stream.read_exact(&mut greeting).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    addr
}

/// What the lead's CI script installs; named in the failure when the binary is missing.
pub const MICROSOCKS_HINT: &str =
    "the `microsocks` SOCKS5 server is not installed: run `.ci/run`, which installs it \
     (apt-get install -y microsocks)";

/// Longest wait for a started `microsocks` to accept connections.
const STARTUP: Duration = Duration::from_secs(5);

/// A real `microsocks` listening on 127.0.0.1, killed when dropped.
pub struct Microsocks {
    /// Where it listens.
    pub addr: SocketAddr,
    _child: Child,
}

impl Microsocks {
    /// Starts `microsocks` on a free loopback port, with username/password authentication
    /// required when `auth` is given. Panics with [`MICROSOCKS_HINT`] when it is missing.
    pub async fn start(auth: Option<(&str, &str)>) -> Microsocks {
        Microsocks::spawn(auth, None).await
    }

    /// Starts `microsocks` on a free loopback port, its outgoing connections leaving from
    /// `exit`, so that a peer can tell a proxied connection from a direct one.
    pub async fn start_leaving_from(exit: Ipv4Addr) -> Microsocks {
        Microsocks::spawn(None, Some(exit)).await
    }

    async fn spawn(auth: Option<(&str, &str)>, exit: Option<Ipv4Addr>) -> Microsocks {
        let binary = find_in_path("microsocks").unwrap_or_else(|| panic!("{MICROSOCKS_HINT}"));
        // microsocks cannot report a port the OS chose, so ask the OS for a free one and hand
        // it over. Another process could take it in between: microsocks then fails to bind
        // and exits, and we try again with another port.
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(&binary);
            cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            if let Some((user, pass)) = auth {
                cmd.args(["-u", user, "-P", pass]);
            }
            if let Some(exit) = exit {
                cmd.args(["-b".to_owned(), exit.to_string()]);
            }
            let mut child = cmd.spawn().expect("spawn microsocks");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if wait_ready(&mut child, addr).await {
                return Microsocks {
                    addr,
                    _child: child,
                };
            }
        }
        panic!("microsocks did not start on any of 5 loopback ports");
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind for a free port");
    l.local_addr().expect("free port address").port()
}

/// Polls until `addr` answers a SOCKS5 greeting and the child is still ours and running.
async fn wait_ready(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = tokio::time::Instant::now() + STARTUP;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if greets(addr).await {
            // Whoever answered, make sure microsocks did not exit for want of the port.
            return matches!(child.try_wait(), Ok(None));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn greets(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    // Offer both methods so the check passes with or without required credentials.
    if s.write_all(&[VERSION, 2, NO_AUTH, USER_PASS])
        .await
        .is_err()
    {
        return false;
    }
    let mut answer = [0u8; 2];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut answer)).await,
        Ok(Ok(_)) if answer[0] == VERSION
    )
}
