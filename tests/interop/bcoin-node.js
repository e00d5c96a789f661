#!/usr/bin/env node
// A bcoin regtest node for peerpool's interop tests, driven over stdio.
//
// The node lives entirely in memory (chain, mempool, address book), listens
// on one loopback address and dials only the peers it is told to. It never
// looks anything up in DNS, never asks UPnP for a gateway and never dials an
// address it learnt from a peer.
//
// Output: one JSON object per line on stdout, each with an "event" field and
// "time" (ms since the UNIX epoch). Logs from bcoin go to stderr.
// Input: one JSON command per line on stdin; EOF stops the node.
//
// See README.md beside this file for the event and command reference.
//
// Run with NODE_BACKEND=js: bcoin's native backends are not built, because
// the packages are installed with --ignore-scripts.

'use strict';

const net = require('net');
const path = require('path');
const readline = require('readline');
const util = require('util');

const bcoin = require('bcoin');

const {Chain, Mempool, Pool, Peer, Network, Logger} = loadBcoin();
const NetAddress = require('bcoin/lib/net/netaddress');

function loadBcoin() {
  // blgr is a dependency of bcoin, not of this package: resolve it the way
  // bcoin does, so both share one module instance.
  const blgrPath = require.resolve('blgr', {
    paths: [path.dirname(require.resolve('bcoin'))]
  });
  return {
    Chain: bcoin.Chain,
    Mempool: bcoin.Mempool,
    Pool: bcoin.Pool,
    Peer: bcoin.Peer,
    Network: bcoin.Network,
    Logger: require(blgrPath)
  };
}

// ---------------------------------------------------------------------------
// Options

const USAGE = `usage: bcoin-node.js [options]
  --host IP               listen address (default 127.0.0.1; must be loopback)
  --port N                listen port, 0 for one picked by the OS (default 0)
  --no-listen             do not accept inbound connections
  --peer HOST:PORT        dial this peer once at start (repeatable; loopback only)
  --outbound-from IP      local loopback address for outbound sockets
  --ping-interval-ms N    interval of bcoin's keepalive ping (bcoin: 30000)
  --max-inbound N         inbound connection limit (bcoin: 8)
  --log-level LEVEL       bcoin log level on stderr: none|error|warning|info|debug|spam
                          (default: $BCOIN_LOG_LEVEL or "info")
Environment variables of the same names (BCOIN_HOST, BCOIN_PORT, BCOIN_PEERS
as a comma-separated list, BCOIN_PING_INTERVAL_MS, BCOIN_OUTBOUND_FROM) are
read first; arguments override them.`;

function parseArgs(argv, env) {
  const opts = {
    host: env.BCOIN_HOST || '127.0.0.1',
    port: env.BCOIN_PORT != null ? Number(env.BCOIN_PORT) : 0,
    listen: true,
    peers: env.BCOIN_PEERS ? env.BCOIN_PEERS.split(',').filter(Boolean) : [],
    outboundFrom: env.BCOIN_OUTBOUND_FROM || null,
    pingIntervalMs: env.BCOIN_PING_INTERVAL_MS != null
      ? Number(env.BCOIN_PING_INTERVAL_MS)
      : null,
    maxInbound: null,
    logLevel: env.BCOIN_LOG_LEVEL || 'info'
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length)
        throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '--host': opts.host = value(); break;
      case '--port': opts.port = Number(value()); break;
      case '--no-listen': opts.listen = false; break;
      case '--peer': opts.peers.push(value()); break;
      case '--outbound-from': opts.outboundFrom = value(); break;
      case '--ping-interval-ms': opts.pingIntervalMs = Number(value()); break;
      case '--max-inbound': opts.maxInbound = Number(value()); break;
      case '--log-level': opts.logLevel = value(); break;
      case '-h':
      case '--help':
        process.stderr.write(USAGE + '\n');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${arg}\n${USAGE}`);
    }
  }

  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 0xffff)
    throw new Error(`bad port ${opts.port}`);
  if (opts.pingIntervalMs != null
      && (!Number.isInteger(opts.pingIntervalMs) || opts.pingIntervalMs <= 0))
    throw new Error(`bad ping interval ${opts.pingIntervalMs}`);
  if (!isLoopback(opts.host))
    throw new Error(`refusing to listen on non-loopback address ${opts.host}`);
  if (opts.outboundFrom != null && !isLoopback(opts.outboundFrom))
    throw new Error(`refusing non-loopback outbound address ${opts.outboundFrom}`);
  for (const peer of opts.peers)
    checkPeerAddress(peer);

  return opts;
}

// The whole point of this script is a node that cannot reach past the
// machine: every address it touches must be in 127.0.0.0/8 or ::1.
function isLoopback(host) {
  if (net.isIPv4(host))
    return host.split('.')[0] === '127';
  if (net.isIPv6(host)) {
    const lower = host.toLowerCase();
    return lower === '::1' || /^::ffff:127\./.test(lower);
  }
  return false;
}

function splitHostPort(text) {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) || /^([^:]+):(\d+)$/.exec(text);
  if (!m)
    throw new Error(`address "${text}" is not HOST:PORT`);
  return {host: m[1], port: Number(m[2])};
}

function checkPeerAddress(text) {
  const {host, port} = splitHostPort(text);
  if (!isLoopback(host))
    throw new Error(`refusing to dial non-loopback address ${text}`);
  if (port <= 0 || port > 0xffff)
    throw new Error(`bad port in ${text}`);
  return {host, port};
}

// ---------------------------------------------------------------------------
// Output

function emit(event, fields) {
  const line = JSON.stringify({event, time: Date.now(), ...fields});
  // Writes to a pipe are synchronous on Linux, so nothing is lost on exit.
  process.stdout.write(line + '\n');
}

function errorText(err) {
  if (err == null)
    return 'unknown error';
  if (err instanceof Error)
    return err.message;
  return String(err);
}

// ---------------------------------------------------------------------------
// The node

class Harness {
  constructor(opts) {
    this.opts = opts;
    this.network = Network.get('regtest');
    // What we know about each peer beyond bcoin's own Peer fields, by id.
    this.info = new Map();
    this.stopping = false;

    this.logger = makeLogger(opts.logLevel);

    this.chain = new Chain({
      network: this.network,
      logger: this.logger,
      memory: true,
      workers: null
    });

    this.mempool = new Mempool({
      network: this.network,
      logger: this.logger,
      chain: this.chain,
      memory: true
    });

    this.pool = new Pool({
      network: this.network,
      logger: this.logger,
      chain: this.chain,
      mempool: this.mempool,
      memory: true,
      listen: opts.listen,
      host: opts.host,
      // The address book refuses port 0; the real port is set in start().
      port: opts.port || this.network.port,
      // bcoin's regtest seed list is ['127.0.0.1'], which would make it dial
      // whatever listens on 127.0.0.1:48444. No seeds, no priority nodes.
      seeds: [],
      nodes: [],
      upnp: false,
      maxInbound: opts.maxInbound != null ? opts.maxInbound : undefined,
      createSocket: (port, host) => this.createSocket(port, host)
    });

    this.confine();
    this.hook();
  }

  // Switch off every way bcoin has of finding or reaching other hosts.
  confine() {
    const pool = this.pool;

    // discoverExternal asks OpenDNS's resolvers for our public IP whenever the
    // pool listens and knows no routable local address, which on loopback is
    // always. discoverGateway is UPnP; discoverSeeds resolves DNS seeds.
    pool.discoverExternal = async () => {};
    pool.discoverGateway = async () => false;
    pool.discoverSeeds = async () => {};
    pool.hosts.discoverSeeds = async () => {};
    pool.hosts.discoverNodes = async () => {};
    pool.options.resolve = async (name) => {
      throw new Error(`DNS lookups are disabled (${name})`);
    };
    pool.hosts.resolve = pool.options.resolve;

    // The pool fills its outbound slots from addresses peers gossip to it.
    // Only the connect command (and --peer) dial here.
    pool.fillOutbound = () => {};
    pool.addLoader = () => {};
    pool.addOutbound = () => {};
  }

  // The last line of defence: no socket to anything but loopback.
  createSocket(port, host) {
    if (!isLoopback(host))
      throw new Error(`refusing to dial non-loopback address ${host}:${port}`);
    const options = {port, host};
    if (this.opts.outboundFrom)
      options.localAddress = this.opts.outboundFrom;
    return net.connect(options);
  }

  hook() {
    const pool = this.pool;
    const bindPeer = pool.bindPeer.bind(pool);
    pool.bindPeer = (peer) => {
      bindPeer(peer);
      this.watchPeer(peer);
    };

    // bcoin drops refused inbound sockets silently; report them. And a socket
    // from a host:port that is already a peer makes bcoin assert (and the
    // process die) inside the server's connection handler: catch that.
    const handleSocket = pool.handleSocket.bind(pool);
    pool.handleSocket = (socket) => {
      const addr = `${socket.remoteAddress}:${socket.remotePort}`;
      let reason = null;
      if (!socket.remoteAddress)
        reason = 'already disconnected';
      else if (pool.peers.inbound >= pool.options.maxInbound)
        reason = 'too many inbound';
      else if (pool.hosts.isBanned(socket.remoteAddress))
        reason = 'banned';
      try {
        handleSocket(socket);
      } catch (err) {
        reason = errorText(err);
        socket.destroy();
      }
      if (reason)
        emit('refused', {addr, reason});
    };

    pool.on('error', (err) => {
      emit('error', {message: errorText(err)});
    });
    pool.on('ban', (peer) => {
      emit('ban', {peer: peer.id, addr: peer.hostname()});
    });
    this.chain.on('error', err => emit('error', {message: errorText(err)}));
    this.mempool.on('error', err => emit('error', {message: errorText(err)}));
  }

  watchPeer(peer) {
    const info = {
      direction: peer.outbound ? 'outbound' : 'inbound',
      lastError: null,
      closeReason: null,
      lastPingSent: null,
      lastPingReceived: null,
      lastPongSent: null,
      lastPongReceived: null
    };
    this.info.set(peer.id, info);

    const base = () => ({
      peer: peer.id,
      addr: peer.hostname(),
      direction: info.direction
    });

    if (peer.outbound) {
      emit('dial', base());
      peer.once('connect', () => {
        emit('connect', {...base(), local: localAddr(peer)});
      });
    } else {
      emit('connect', {...base(), local: localAddr(peer)});
    }

    peer.once('open', () => {
      emit('open', {
        ...base(),
        version: peer.version,
        agent: peer.agent,
        services: peer.services >>> 0,
        height: peer.height,
        relay: !peer.noRelay
      });
    });

    peer.on('error', (err) => {
      info.lastError = errorText(err);
      emit('peer_error', {...base(), message: info.lastError});
    });

    peer.once('close', (connected) => {
      emit('close', {
        ...base(),
        reason: info.closeReason || info.lastError || 'closed',
        was_connected: connected,
        handshake: peer.handshake
      });
    });

    // Every frame bcoin parses, before it handles it: a frame that makes
    // bcoin drop the peer is reported too.
    peer.parser.on('packet', (packet) => {
      const fields = {...base(), dir: 'in', command: packet.cmd};
      if (packet.cmd === 'ping' || packet.cmd === 'pong') {
        const nonce = packet.nonce ? packet.nonce.toString('hex') : null;
        fields.nonce = nonce;
        if (packet.cmd === 'ping')
          info.lastPingReceived = {time: Date.now(), nonce};
        else
          info.lastPongReceived = {time: Date.now(), nonce};
      }
      emit('message', fields);
    });

    // Every frame bcoin writes (send() and relays both end here).
    const sendRaw = peer.sendRaw.bind(peer);
    peer.sendRaw = (cmd, body, checksum) => {
      sendRaw(cmd, body, checksum);
      const fields = {...base(), dir: 'out', command: cmd};
      if ((cmd === 'ping' || cmd === 'pong') && body.length >= 8) {
        const nonce = body.slice(0, 8).toString('hex');
        fields.nonce = nonce;
        if (cmd === 'ping')
          info.lastPingSent = {time: Date.now(), nonce};
        else
          info.lastPongSent = {time: Date.now(), nonce};
      }
      emit('message', fields);
    };
  }

  async start() {
    if (this.opts.pingIntervalMs != null) {
      // Read by each peer when its handshake completes (Peer#finalize).
      Peer.PING_INTERVAL = this.opts.pingIntervalMs;
    }

    await this.chain.open();
    await this.mempool.open();
    await this.pool.open();
    // Port 0 asks the OS for a free port; bcoin itself only needs the number
    // for the address it would advertise, which it never does on loopback.
    this.pool.options.port = this.opts.port;
    await this.pool.connect();
    if (this.opts.listen) {
      const port = this.pool.server.address().port;
      this.pool.options.port = port;
      this.pool.options.publicPort = port;
      this.pool.hosts.address.port = port;
    }

    const listening = this.opts.listen ? this.pool.server.address() : null;
    emit('ready', {
      host: listening ? listening.address : null,
      port: listening ? listening.port : null,
      network: this.network.type,
      // Network magic as it appears on the wire.
      magic: magicHex(this.network.magic),
      agent: this.pool.options.agent,
      version: this.pool.options.version,
      services: this.pool.options.services >>> 0,
      height: this.chain.height,
      ping_interval_ms: Peer.PING_INTERVAL,
      pid: process.pid
    });

    for (const addr of this.opts.peers) {
      try {
        this.connect(addr);
      } catch (err) {
        emit('error', {message: `connect ${addr}: ${errorText(err)}`});
      }
    }
  }

  connect(text) {
    const {host, port} = checkPeerAddress(text);
    const addr = NetAddress.fromHost(host, port, this.network);
    if (this.pool.peers.has(addr.hostname))
      throw new Error(`already connected to ${addr.hostname}`);
    // What Pool#addOutbound does, minus choosing the address.
    const peer = this.pool.createOutbound(addr);
    this.pool.peers.add(peer);
    return peer;
  }

  peerList() {
    const out = [];
    for (let peer = this.pool.peers.head(); peer; peer = peer.next) {
      const info = this.info.get(peer.id) || {};
      out.push({
        peer: peer.id,
        addr: peer.hostname(),
        direction: peer.outbound ? 'outbound' : 'inbound',
        state: peerState(peer),
        version: peer.version === -1 ? null : peer.version,
        agent: peer.agent,
        services: peer.version === -1 ? null : peer.services >>> 0,
        height: peer.height === -1 ? null : peer.height,
        ban_score: peer.banScore,
        connected_at: peer.time || null,
        last_send: peer.lastSend || null,
        last_recv: peer.lastRecv || null,
        // bcoin's own ping bookkeeping (times in ms since the epoch, -1 = never).
        ping_outstanding: peer.challenge ? peer.challenge.toString('hex') : null,
        last_ping: peer.lastPing === -1 ? null : peer.lastPing,
        last_pong: peer.lastPong === -1 ? null : peer.lastPong,
        min_ping_ms: peer.minPing === -1 ? null : peer.minPing,
        // Seen on the wire by this script, in either direction.
        last_ping_sent: info.lastPingSent || null,
        last_ping_received: info.lastPingReceived || null,
        last_pong_sent: info.lastPongSent || null,
        last_pong_received: info.lastPongReceived || null
      });
    }
    return out;
  }

  // Answers every command with exactly one "reply" event.
  handleCommand(line) {
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (err) {
      emit('reply', {ok: false, error: `bad JSON: ${errorText(err)}`});
      return;
    }
    const reply = (fields) => {
      emit('reply', {id: cmd.id != null ? cmd.id : null, cmd: cmd.cmd, ...fields});
    };

    try {
      switch (cmd.cmd) {
        case 'connect': {
          const peer = this.connect(String(cmd.addr));
          reply({ok: true, peer: peer.id});
          break;
        }
        case 'disconnect': {
          const peer = this.findPeer(cmd);
          if (!peer) {
            reply({ok: false, error: 'no such peer'});
            break;
          }
          this.disconnect(peer, 'disconnect command');
          reply({ok: true, peer: peer.id});
          break;
        }
        case 'disconnect_all': {
          const peers = [];
          for (let peer = this.pool.peers.head(); peer; peer = peer.next)
            peers.push(peer);
          for (const peer of peers)
            this.disconnect(peer, 'disconnect_all command');
          reply({ok: true, count: peers.length});
          break;
        }
        case 'peers': {
          reply({ok: true, peers: this.peerList()});
          break;
        }
        case 'ping': {
          // bcoin sends no new ping while one is unanswered; those peers are
          // listed as skipped.
          const sent = [];
          const skipped = [];
          for (let peer = this.pool.peers.head(); peer; peer = peer.next) {
            if (!peer.handshake || peer.challenge) {
              skipped.push(peer.id);
              continue;
            }
            peer.sendPing();
            sent.push({peer: peer.id, nonce: peer.challenge
              ? peer.challenge.toString('hex')
              : null});
          }
          reply({ok: true, sent, skipped});
          break;
        }
        case 'stop': {
          reply({ok: true});
          this.stop(0);
          break;
        }
        default:
          reply({ok: false, error: `unknown command ${JSON.stringify(cmd.cmd)}`});
      }
    } catch (err) {
      reply({ok: false, error: errorText(err)});
    }
  }

  findPeer(cmd) {
    for (let peer = this.pool.peers.head(); peer; peer = peer.next) {
      if (cmd.peer != null && peer.id === cmd.peer)
        return peer;
      if (cmd.addr != null && peer.hostname() === cmd.addr)
        return peer;
    }
    return null;
  }

  disconnect(peer, reason) {
    const info = this.info.get(peer.id);
    if (info)
      info.closeReason = reason;
    peer.destroy();
  }

  async stop(code) {
    if (this.stopping)
      return;
    this.stopping = true;

    // Never hang the test that is waiting for us to go.
    setTimeout(() => process.exit(code), 5000).unref();

    try {
      await this.pool.close();
      await this.mempool.close();
      await this.chain.close();
    } catch (err) {
      emit('error', {message: `while stopping: ${errorText(err)}`});
    }
    emit('stopped', {});
    process.exit(code);
  }
}

function peerState(peer) {
  if (peer.destroyed)
    return 'closed';
  if (!peer.connected)
    return 'connecting';
  if (peer.handshake)
    return 'open';
  if (peer.version !== -1)
    return 'got_version';
  if (peer.ack)
    return 'got_verack';
  return 'handshaking';
}

function localAddr(peer) {
  const socket = peer.socket;
  if (!socket || !socket.localAddress)
    return null;
  return `${socket.localAddress}:${socket.localPort}`;
}

function magicHex(magic) {
  const buf = Buffer.alloc(4);
  buf.writeUInt32LE(magic >>> 0, 0);
  return buf.toString('hex');
}

function makeLogger(level) {
  const logger = new Logger({level, console: true, colors: false});
  // blgr writes everything but errors to stdout, which is ours.
  logger.writeConsole = (lvl, module, args) => {
    const name = Logger.levelsByVal[lvl];
    const prefix = module ? `[${name}] (${module}) ` : `[${name}] `;
    process.stderr.write(prefix + util.format(...args) + '\n');
    return true;
  };
  return logger;
}

// ---------------------------------------------------------------------------

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2), process.env);
  } catch (err) {
    emit('error', {message: errorText(err), fatal: true});
    process.exit(2);
  }

  // bcoin.set also makes regtest the default network of the modules that
  // read Network.primary (addresses, packets).
  bcoin.set('regtest');

  const harness = new Harness(opts);

  process.on('uncaughtException', (err) => {
    emit('error', {message: `uncaught: ${err && err.stack || err}`, fatal: true});
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    emit('error', {message: `unhandled rejection: ${err && err.stack || err}`});
  });
  process.on('SIGTERM', () => harness.stop(0));
  process.on('SIGINT', () => harness.stop(0));

  await harness.logger.open();
  await harness.start();

  const rl = readline.createInterface({input: process.stdin, terminal: false});
  rl.on('line', (line) => {
    if (line.trim() === '')
      return;
    harness.handleCommand(line);
  });
  rl.on('close', () => harness.stop(0));
}

main().catch((err) => {
  emit('error', {message: `startup failed: ${err && err.stack || err}`, fatal: true});
  process.exit(1);
});
