#!/usr/bin/env python3
"""A FleetLock server for the tests, keeping its semaphore in etcd (v3 JSON
gateway), the way airlock does: one key per group holding the ids of the
hosts that may reboot now and the group's size. Standard library only.

usage: server.py --etcd http://127.0.0.1:PORT --listen 127.0.0.1:PORT --slots N
Prints "listening on HOST:PORT" once it serves.
"""
import argparse
import base64
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None


def b64(s):
    return base64.b64encode(s.encode()).decode()


def etcd(path, body):
    req = urllib.request.Request(
        ARGS.etcd + path, data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def key(group):
    return "/tandem-fleetlock/%s/semaphore" % group


def read(group):
    r = etcd("/v3/kv/range", {"key": b64(key(group))})
    kvs = r.get("kvs") or []
    if not kvs:
        return {"holders": [], "slots": ARGS.slots}, None
    kv = kvs[0]
    return json.loads(base64.b64decode(kv["value"])), kv["mod_revision"]


def swap(group, sem, rev):
    """Writes sem if the key is still at rev (None: still absent)."""
    if rev is None:
        cmp = {"key": b64(key(group)), "target": "CREATE", "create_revision": "0", "result": "EQUAL"}
    else:
        cmp = {"key": b64(key(group)), "target": "MOD", "mod_revision": rev, "result": "EQUAL"}
    put = {"requestPut": {"key": b64(key(group)), "value": b64(json.dumps(sem))}}
    return etcd("/v3/kv/txn", {"compare": [cmp], "success": [put]}).get("succeeded", False)


def change(group, fn):
    for _ in range(50):
        sem, rev = read(group)
        verdict = fn(sem)
        if verdict is not None:
            return verdict
        if swap(group, sem, rev):
            return None
    return ("contention", "could not update the semaphore")


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, kind=None, value=None):
        body = b"" if kind is None else json.dumps({"kind": kind, "value": value}).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n)
        if self.headers.get("fleet-lock-protocol") != "true":
            return self.reply(400, "missing_header", "fleet-lock-protocol: true is required")
        try:
            p = json.loads(raw)["client_params"]
            host, group = p["id"], p["group"]
        except (ValueError, KeyError, TypeError):
            return self.reply(400, "bad_body", "want {\"client_params\": {\"id\", \"group\"}}")
        if self.path == "/v1/pre-reboot":
            def lock(sem):
                if host in sem["holders"]:
                    return "ok"
                if len(sem["holders"]) >= sem["slots"]:
                    return ("failed_lock", "all %d slot(s) of group %s are held: %s"
                            % (sem["slots"], group, ", ".join(sem["holders"])))
                sem["holders"].append(host)
            v = change(group, lock)
        elif self.path == "/v1/steady-state":
            def unlock(sem):
                if host not in sem["holders"]:
                    return "ok"
                sem["holders"].remove(host)
            v = change(group, unlock)
        else:
            return self.reply(404, "not_found", self.path)
        if v is None or v == "ok":
            sys.stderr.write("%s %s %s: ok\n" % (self.path, group, host))
            return self.reply(200)
        sys.stderr.write("%s %s %s: %s\n" % (self.path, group, host, v[1]))
        return self.reply(409, v[0], v[1])

    def log_message(self, *a):
        pass


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcd", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--slots", type=int, default=1)
    ARGS = ap.parse_args()
    h, p = ARGS.listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((h, int(p)), Handler)
    print("listening on %s:%d" % srv.server_address[:2], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
