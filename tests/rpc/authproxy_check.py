"""Drives a peerpool daemon with python-bitcoinrpc's AuthServiceProxy, unchanged.

Usage: authproxy_check.py RPC_URL WRONG_URL ONETRY_PEER ADD_PEER
Exits non-zero with a message on the first mismatch.
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
    rpc = AuthServiceProxy(url)

    peers = rpc.getpeerinfo()
    if peers != []:
        fail("expected no peers at start, got %r" % peers)

    if rpc.addnode(onetry_peer, "onetry") is not None:
        fail("addnode onetry should return null")
    peers = wait_for(rpc.getpeerinfo, lambda ps: any(p["addr"] == onetry_peer for p in ps))
    p = [p for p in peers if p["addr"] == onetry_peer][0]
    for field in ("id", "addr", "services", "relaytxes", "lastsend", "lastrecv", "bytessent",
                  "bytesrecv", "conntime", "timeoffset", "version", "subver", "inbound",
                  "startingheight", "banscore", "synced_headers", "synced_blocks",
                  "bytessent_per_msg", "bytesrecv_per_msg", "connection_type", "network"):
        if field not in p:
            fail("getpeerinfo lacks %s: %r" % (field, p))
    if p["inbound"] or p["connection_type"] != "manual":
        fail("onetry peer should be outbound manual: %r" % p)

    if rpc.addnode(add_peer, "add") is not None:
        fail("addnode add should return null")
    expect_error(lambda: rpc.addnode(add_peer, "add"), -23)
    added = rpc.getaddednodeinfo()
    if [a["addednode"] for a in added] != [add_peer]:
        fail("getaddednodeinfo: %r" % added)
    wait_for(rpc.getconnectioncount, lambda n: n == 2)
    if rpc.addnode(add_peer, "remove") is not None:
        fail("addnode remove should return null")
    expect_error(lambda: rpc.addnode(add_peer, "remove"), -24)
    expect_error(lambda: rpc.getaddednodeinfo(add_peer), -24)

    count = rpc.getconnectioncount()
    if not isinstance(count, int) or count < 1:
        fail("getconnectioncount: %r" % count)

    # batch_ sends JSON-RPC 2.0 objects and reads every reply's `error` member.
    results = rpc.batch_([["getconnectioncount"], ["uptime"], ["listbanned"], ["getaddednodeinfo"]])
    if len(results) != 4 or results[0] != count or results[2] != [] or results[3] != []:
        fail("batch: %r" % results)

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
