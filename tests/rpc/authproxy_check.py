"""Drives a peerpool daemon with python-bitcoinrpc's AuthServiceProxy, unchanged.

Usage: authproxy_check.py RPC_URL WRONG_URL ONETRY_PEER ADD_PEER [strict]
With `strict`, the daemon gives JSON-RPC 2.0 replies (its default); without, it runs with
--rpc-strict-jsonrpc2=false. Exits non-zero with a message on the
first mismatch.
"""
import sys
import time

from bitcoinrpc.authproxy import AuthServiceProxy, JSONRPCException


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def expect_error(call, code):
    try:
        call()
    except JSONRPCException as e:
        if e.error.get("code") != code:
            fail("expected code %d, got %r" % (code, e.error))
        return e.error
    fail("expected error %d, got success" % code)


def wait_for(what, pred, timeout=10.0):
    deadline = time.time() + timeout
    while True:
        value = what()
        if pred(value):
            return value
        if time.time() > deadline:
            fail("condition never held; last value %r" % (value,))
        time.sleep(0.05)


def main():
    url, wrong_url, onetry_peer, add_peer = sys.argv[1:5]
    strict = sys.argv[5:] == ["strict"]
    rpc = AuthServiceProxy(url)

    info = rpc.getnetworkinfo()
    if info["version"] != 310000 or info["warnings"] != [] or info["connections"] != 0:
        fail("getnetworkinfo: %r" % info)

    peers = rpc.getpeerinfo()
    if peers != []:
        fail("expected no peers at start, got %r" % peers)

    if rpc.addnode(onetry_peer, "onetry") is not None:
        fail("addnode onetry should return null")
    peers = wait_for(rpc.getpeerinfo,
                     lambda ps: any(p["addr"] == onetry_peer and p["version"] > 0 for p in ps))
    p = [p for p in peers if p["addr"] == onetry_peer][0]
    for field in ("id", "addr", "services", "relaytxes", "lastsend", "lastrecv", "bytessent",
                  "bytesrecv", "conntime", "timeoffset", "version", "subver", "inbound",
                  "startingheight", "banscore", "synced_headers", "synced_blocks",
                  "bytessent_per_msg", "bytesrecv_per_msg", "connection_type", "network"):
        if field not in p:
            fail("getpeerinfo lacks %s: %r" % (field, p))
    if p["inbound"] or p["connection_type"] != "manual":
        fail("onetry peer should be outbound manual: %r" % p)
    if p["version"] != info["protocolversion"] or not p["subver"].startswith("/peerpool:"):
        fail("onetry peer's version: %r" % p)

    if rpc.addnode(add_peer, "add") is not None:
        fail("addnode add should return null")
    expect_error(lambda: rpc.addnode(add_peer, "add"), -23)
    added = rpc.getaddednodeinfo()
    if [a["addednode"] for a in added] != [add_peer]:
        fail("getaddednodeinfo: %r" % added)
    wait_for(rpc.getconnectioncount, lambda n: n == 2)
    info = rpc.getnetworkinfo()
    if (info["connections"], info["connections_in"], info["connections_out"]) != (2, 0, 2):
        fail("getnetworkinfo with two peers: %r" % info)

    # ping: a ping goes to every peer.
    def ping_bytes():
        return sorted((p["addr"], p["bytessent_per_msg"].get("ping", 0)) for p in rpc.getpeerinfo())
    before = ping_bytes()
    if rpc.ping() is not None:
        fail("ping should return null")
    wait_for(ping_bytes, lambda now: len(now) == 2 and all(n[1] > b[1] for n, b in zip(now, before)))

    totals = rpc.getnettotals()
    if totals["totalbytessent"] <= 0 or totals["totalbytesrecv"] <= 0 \
            or abs(totals["timemillis"] - time.time() * 1000) > 60000 \
            or totals["uploadtarget"]["target"] != 0:
        fail("getnettotals: %r" % totals)

    # The peers' addresses reach the address book as they advertise themselves.
    port = int(onetry_peer.rsplit(":", 1)[1])
    wait_for(lambda: rpc.getnodeaddresses(0),
             lambda book: any(a["address"] == "127.0.0.1" and a["port"] == port for a in book))

    if rpc.setban("127.0.0.99", "add", 600) is not None:
        fail("setban should return null")
    bans = rpc.listbanned()
    if [b["address"] for b in bans] != ["127.0.0.99/32"] or bans[0]["ban_duration"] != 600:
        fail("listbanned: %r" % bans)
    expect_error(lambda: rpc.setban("127.0.0.99", "add"), -23)
    if rpc.clearbanned() is not None or rpc.listbanned() != []:
        fail("clearbanned")

    if rpc.addnode(add_peer, "remove") is not None:
        fail("addnode remove should return null")
    expect_error(lambda: rpc.addnode(add_peer, "remove"), -24)
    expect_error(lambda: rpc.getaddednodeinfo(add_peer), -24)

    # addnode remove leaves the connection; disconnectnode ends it.
    if rpc.disconnectnode(onetry_peer) is not None:
        fail("disconnectnode should return null")
    wait_for(rpc.getpeerinfo, lambda ps: [p["addr"] for p in ps] == [add_peer])
    expect_error(lambda: rpc.disconnectnode(onetry_peer), -29)

    count = rpc.getconnectioncount()
    if count != 1:
        fail("getconnectioncount: %r" % count)
    uptime = rpc.uptime()
    if not isinstance(uptime, int) or not 0 <= uptime < 600:
        fail("uptime: %r" % uptime)

    # batch_ sends JSON-RPC 2.0 objects and reads every reply's `error` member, which Core 28+
    # leaves out of JSON-RPC 2.0 replies to successful calls: batches fail against both.
    calls = [["getconnectioncount"], ["uptime"], ["listbanned"], ["getaddednodeinfo"]]
    if strict:
        try:
            rpc.batch_(calls)
            fail("batch_ read JSON-RPC 2.0 replies")
        except KeyError as e:
            if e.args != ("error",):
                fail("batch_: %r" % (e,))
    else:
        results = rpc.batch_(calls)
        if len(results) != 4 or results[0] != count or results[2] != [] or results[3] != []:
            fail("batch: %r" % results)

    # Clients in default-wallet mode post to /wallet/.
    if AuthServiceProxy(url + "/wallet/").getconnectioncount() != count:
        fail("getconnectioncount through /wallet/")

    expect_error(lambda: rpc.nosuchmethod(), -32601)
    expect_error(lambda: rpc.setban("not-an-ip", "add"), -30)

    # A wrong password: the proxy reports the non-JSON 401 answer.
    try:
        AuthServiceProxy(wrong_url).getconnectioncount()
        fail("a wrong password was accepted")
    except JSONRPCException as e:
        if "401" not in str(e.error.get("message")):
            fail("wrong password: %r" % e.error)

    print("ok")


if __name__ == "__main__":
    main()
