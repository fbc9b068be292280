#!/usr/bin/env python3
"""Objects for the scale benchmark (labs/bench-scale.sh), against a kube-apiserver.

  scale.py create API TOKEN COUNT [THREADS]
      COUNT LoadBalancer Services s0..s<COUNT-1> in namespace default, each with its address
      in kube-vip.io/loadbalancerIPs (10.100.0.0 + i + 1), every tenth with
      externalTrafficPolicy: Local, and a core/v1 Endpoints object of 10 ready addresses each
      (100 000 endpoints for 10 000 Services). Two of a Local Service's ten endpoints are on
      vipr's nodes (node1..node3), the rest on 100 other nodes.
  scale.py expect COUNT NODE
      How many routes NODE (node1..node3) advertises for these objects.
  scale.py churn API TOKEN COUNT RATE SECONDS OUT [THREADS]
      RATE changes per second for SECONDS: half move a Cluster Service to a new address
      (10.150.0.0 + n), half move a Local Service's endpoints between the vipr nodes. Writes
      "address ns" to OUT for each move: the new address and when its PATCH returned.

Each thread keeps one HTTPS connection; a failed request is an error (exit 1).
"""
import http.client
import ipaddress
import json
import random
import ssl
import sys
import threading
import time
from urllib.parse import urlparse

BASE = int(ipaddress.IPv4Address("10.100.0.0"))
MOVED = int(ipaddress.IPv4Address("10.150.0.0"))


def address(i):
    return str(ipaddress.IPv4Address(BASE + i + 1))


def local(i):
    return i % 10 == 0


def endpoint_nodes(i, shift=0):
    """The node of each of Service i's ten endpoints."""
    out = []
    for k in range(10):
        if local(i) and k < 2:
            out.append(f"node{(i + k + shift) % 3 + 1}")
        else:
            out.append(f"worker{(i * 7 + k) % 100}")
    return out


class Api:
    def __init__(self, api, token):
        u = urlparse(api)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.ctx = ssl._create_unverified_context()
        self.conn = None

    def call(self, method, path, body=None, ctype="application/json"):
        data = b""
        for attempt in range(8):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
                self.conn.request(method, path, json.dumps(body) if body is not None else None,
                                  {"Authorization": f"Bearer {self.token}", "Content-Type": ctype,
                                   "User-Agent": "vipr-bench"})
                r = self.conn.getresponse()
                data = r.read()
                # 409: the API server gave up its own retries against concurrent writers
                # (vipr writing the Service's status): try again.
                if r.status in (409, 429) or r.status >= 500:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                if r.status not in (200, 201):
                    raise SystemExit(f"{method} {path}: HTTP {r.status} {data[:200]!r}")
                return data
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                data = str(e).encode()
                self.conn = None
                time.sleep(0.2 * (attempt + 1))
        raise SystemExit(f"{method} {path}: giving up: {data[:300]!r}")


def service(i):
    # No NodePort: 2 768 of them would run out long before 10 000 Services.
    spec = {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}],
            "selector": {"app": f"s{i}"}, "allocateLoadBalancerNodePorts": False}
    if local(i):
        spec["externalTrafficPolicy"] = "Local"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"s{i}", "annotations": {"kube-vip.io/loadbalancerIPs": address(i)}},
            "spec": spec}


def endpoints(i, shift=0):
    addrs = [{"ip": f"10.244.{(i * 10 + k) // 250 % 250}.{(i * 10 + k) % 250 + 1}", "nodeName": n}
             for k, n in enumerate(endpoint_nodes(i, shift))]
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": f"s{i}"},
            "subsets": [{"addresses": addrs, "ports": [{"port": 8080, "protocol": "TCP"}]}]}


def parallel(threads, count, work):
    errors = []

    def run(k):
        try:
            work(k)
        except SystemExit as e:
            errors.append(str(e))

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit(errors[0])


def create(api, token, count, threads=8):
    def work(k):
        a = Api(api, token)
        for i in range(k, count, threads):
            a.call("POST", "/api/v1/namespaces/default/services", service(i))
            a.call("POST", "/api/v1/namespaces/default/endpoints", endpoints(i))
    parallel(threads, count, work)


def expect(count, node):
    n = 0
    for i in range(count):
        if not local(i) or node in endpoint_nodes(i):
            n += 1
    return n


def churn(api, token, count, rate, seconds, out, threads=4):
    lock = threading.Lock()
    moves = []
    state = {"n": 0, "shift": {}}
    start = time.monotonic()
    total = int(rate * seconds)

    def work(k):
        a = Api(api, token)
        rng = random.Random(k)
        for j in range(k, total, threads):
            due = start + j / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if j % 2 == 0:
                i = rng.randrange(count)
                while local(i):
                    i = rng.randrange(count)
                with lock:
                    state["n"] += 1
                    new = str(ipaddress.IPv4Address(MOVED + state["n"]))
                a.call("PATCH", f"/api/v1/namespaces/default/services/s{i}",
                       {"metadata": {"annotations": {"kube-vip.io/loadbalancerIPs": new}}},
                       "application/merge-patch+json")
                t = time.time_ns()
                with lock:
                    moves.append((new, t))
            else:
                i = rng.randrange(0, count, 10)
                with lock:
                    shift = state["shift"].get(i, 0) + 1
                    state["shift"][i] = shift
                a.call("PUT", f"/api/v1/namespaces/default/endpoints/s{i}", endpoints(i, shift))
    parallel(threads, total, work)
    with open(out, "w") as f:
        for new, t in moves:
            print(new, t, file=f)


def main():
    cmd = sys.argv[1]
    if cmd == "create":
        create(sys.argv[2], sys.argv[3], int(sys.argv[4]), *(int(x) for x in sys.argv[5:6]))
    elif cmd == "expect":
        print(expect(int(sys.argv[2]), sys.argv[3]))
    elif cmd == "churn":
        api, token, count, rate, seconds, out = sys.argv[2:8]
        churn(api, token, int(count), float(rate), float(seconds), out, *(int(x) for x in sys.argv[8:9]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
