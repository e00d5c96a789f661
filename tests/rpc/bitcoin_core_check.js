// Drives a peerpool daemon with npm's `bitcoin-core` client, unchanged.
//
// Usage: node bitcoin_core_check.js RPC_URL USER PASSWORD ONETRY_PEER ADD_PEER
// (`bitcoin-core` found through NODE_PATH). The daemon starts with no connections; the two
// peers are daemons it can connect to. Prints "ok", or exits non-zero with a message on the
// first mismatch.
'use strict';

const assert = require('node:assert/strict');
const Client = require('bitcoin-core');

const [host, username, password, onetryPeer, addPeer] = process.argv.slice(2);

/** Calls `what` until `pred` holds for its value (up to 20 s); returns that value. */
async function waitFor(label, what, pred) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const value = await what();
    if (pred(value)) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`${label}: never held; last value ${JSON.stringify(value)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** `value` as plain objects: the client's JSON parser makes objects without a prototype. */
function plain(value) {
  return JSON.parse(JSON.stringify(value));
}

/** Expects `promise` to fail with the RPC error `code`; returns the error. */
async function rejects(promise, code) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.code, code, `expected error ${code}, got ${e}`);
    return e;
  }
  throw new Error(`expected error ${code}, got success`);
}

async function main() {
  const client = new Client({ host, username, password });
  // With a version, the client sends a lone object argument as named parameters.
  const named = new Client({ host, username, password, version: '31.0.0' });

  const info = await client.getNetworkInfo();
  assert.equal(info.version, 310000);
  assert.match(info.subversion, /^\/peerpool:/);
  assert.deepEqual(info.warnings, []);
  assert.equal(info.networkactive, true);
  assert.equal(info.connections, 0);
  assert.equal(await client.getConnectionCount(), 0);
  assert.deepEqual(await client.getPeerInfo(), []);

  // addnode onetry: one outbound manual connection, its row decoded.
  assert.equal(await client.addNode(onetryPeer, 'onetry'), null);
  const peers = await waitFor('the onetry peer after its handshake', () => client.getPeerInfo(),
    (ps) => ps.some((p) => p.addr === onetryPeer && p.version > 0));
  const p = peers.find((row) => row.addr === onetryPeer);
  assert.equal(p.inbound, false);
  assert.equal(p.connection_type, 'manual');
  assert.equal(p.network, 'not_publicly_routable');
  assert.equal(p.addnode, true);
  assert.equal(p.version, info.protocolversion);
  assert.match(p.subver, /^\/peerpool:/);
  assert.equal(p.startingheight, 0);
  assert.equal(p.transport_protocol_type, 'v1');
  assert.ok(p.bytessent > 0 && p.bytesrecv > 0, JSON.stringify(p));
  assert.ok(p.bytessent_per_msg.version > 0, JSON.stringify(p.bytessent_per_msg));

  // addnode add, twice; getaddednodeinfo, all and by name.
  assert.equal(await client.addNode(addPeer, 'add'), null);
  await rejects(client.addNode(addPeer, 'add'), -23);
  const added = await waitFor('the added node connected', () => client.getAddedNodeInfo(),
    (a) => a.length === 1 && a[0].connected);
  assert.deepEqual(plain(added), [{
    addednode: addPeer,
    addresses: [{ address: addPeer, connected: 'outbound' }],
    connected: true,
  }]);
  assert.deepEqual(plain(await client.getAddedNodeInfo(addPeer)), plain(added));
  await waitFor('two connections', () => client.getConnectionCount(), (n) => n === 2);
  const two = await client.getNetworkInfo();
  assert.equal(two.connections, 2);
  assert.equal(two.connections_out, 2);
  assert.equal(two.connections_in, 0);

  // ping: a ping goes to every peer.
  const pingBytes = (rows) => rows.map((row) => row.bytessent_per_msg.ping || 0);
  const before = pingBytes(await client.getPeerInfo());
  assert.equal(await client.ping(), null);
  await waitFor('a ping sent to each peer', () => client.getPeerInfo(),
    (rows) => rows.length === 2 && pingBytes(rows).every((b, i) => b > before[i]));

  const totals = await client.getNetTotals();
  assert.ok(totals.totalbytessent > 0 && totals.totalbytesrecv > 0, JSON.stringify(totals));
  assert.ok(Math.abs(totals.timemillis - Date.now()) < 60000, JSON.stringify(totals));
  assert.equal(totals.uploadtarget.target, 0);
  assert.equal(totals.uploadtarget.timeframe, 86400);

  // The peers' addresses reach the address book as they advertise themselves.
  const port = Number(onetryPeer.split(':').pop());
  const book = await waitFor('the onetry peer in getnodeaddresses', () => client.getNodeAddresses(0),
    (as) => as.some((a) => a.address === '127.0.0.1' && a.port === port));
  assert.ok(book.every((a) => typeof a.time === 'number' && typeof a.services === 'number'));
  assert.deepEqual(await named.getNodeAddresses({ count: 0, network: 'ipv6' }), []);

  // setban, listbanned, clearbanned.
  assert.equal(await client.setBan('127.0.0.99', 'add', 600), null);
  assert.equal(await named.setBan({ subnet: '127.1.0.0/16', command: 'add' }), null);
  let bans = await client.listBanned();
  assert.deepEqual(bans.map((b) => b.address), ['127.0.0.99/32', '127.1.0.0/16']);
  assert.equal(bans[0].banned_until - bans[0].ban_created, 600);
  assert.equal(bans[0].ban_duration, 600);
  assert.equal(bans[1].ban_duration, 86400);
  await rejects(client.setBan('127.0.0.99', 'add'), -23);
  assert.equal(await client.setBan('127.0.0.99', 'remove'), null);
  bans = await client.listBanned();
  assert.deepEqual(bans.map((b) => b.address), ['127.1.0.0/16']);
  assert.equal(await client.clearBanned(), null);
  assert.deepEqual(await client.listBanned(), []);
  await rejects(client.setBan('not-an-ip', 'add'), -30);

  // disconnectnode by address; then the added node, removed first so it is not redialed, by id.
  assert.equal(await client.disconnectNode(onetryPeer), null);
  await waitFor('the onetry peer gone', () => client.getPeerInfo(),
    (rows) => !rows.some((row) => row.addr === onetryPeer));
  await rejects(client.disconnectNode(onetryPeer), -29);
  assert.equal(await client.addNode(addPeer, 'remove'), null);
  await rejects(client.addNode(addPeer, 'remove'), -24);
  assert.deepEqual(await client.getAddedNodeInfo(), []);
  const [left] = await client.getPeerInfo();
  assert.equal(left.addr, addPeer);
  assert.equal(await named.disconnectNode({ nodeid: left.id }), null);
  await waitFor('no connections', () => client.getConnectionCount(), (n) => n === 0);

  const uptime = await client.upTime();
  assert.ok(Number.isInteger(uptime) && uptime >= 0 && uptime < 600, String(uptime));
  assert.match(await client.help('uptime'), /^uptime\n/);

  // A batch: replies in order, an error in its place.
  const batch = await client.command([
    { method: 'getconnectioncount' },
    { method: 'listbanned' },
    { method: 'nosuchmethod' },
  ]);
  assert.equal(batch[0], 0);
  assert.deepEqual(batch[1], []);
  assert.equal(batch[2].code, -32601);

  await rejects(client.command('nosuchmethod'), -32601);
  // Wallet calls go to /wallet/NAME, which is served: peerpool has no wallet methods.
  const wallet = new Client({ host, username, password, wallet: 'w' });
  await rejects(wallet.getBalance(), -32601);
  // A wrong password: the HTTP status as the code.
  const wrong = new Client({ host, username, password: `${password}x` });
  await rejects(wrong.getConnectionCount(), 401);

  console.log('ok');
}

main().catch((e) => {
  console.error(`FAIL: ${e.stack || e}`);
  process.exit(1);
});
