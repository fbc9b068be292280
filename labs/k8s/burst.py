#!/usr/bin/env python3
"""Creates LoadBalancer Services in a burst against a kube-apiserver and prints, for each,
its name and the wall-clock time (ns) its POST returned: the start of its latency.

  burst.py API TOKEN NAMESPACE COUNT PREFIX [ADDRESS_FORMAT] [THREADS]

ADDRESS_FORMAT (e.g. "198.51.100.{i}") asks for an address with kube-vip's annotation;
without it the Services ask for none. Each thread keeps one HTTPS connection.
"""
import http.client
import json
import ssl
import sys
import threading
import time
from urllib.parse import urlparse


def main():
    api, token, ns, count, prefix = sys.argv[1:6]
    fmt = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] else None
    threads = int(sys.argv[7]) if len(sys.argv) > 7 else 8
    count = int(count)
    u = urlparse(api)
    ctx = ssl._create_unverified_context()
    out, lock = [], threading.Lock()

    def worker(k):
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)
        for i in range(k, count, threads):
            name = f"{prefix}{i}"
            # No controller-manager writes endpoints here: vipr, as kube-vip, announces a
            # Service without a ready endpoint only with this opt-in.
            meta = {"name": name, "annotations": {"kube-vip.io/allow-reconcile-without-endpoints": "true"}}
            if fmt:
                meta["annotations"]["kube-vip.io/loadbalancerIPs"] = fmt.format(i=i, hi=i // 250, lo=i % 250 + 1)
            body = json.dumps({
                "apiVersion": "v1", "kind": "Service", "metadata": meta,
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
            })
            conn.request("POST", f"/api/v1/namespaces/{ns}/services", body,
                         {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                          "User-Agent": "vipr-bench"})
            r = conn.getresponse()
            r.read()
            t = time.time_ns()
            if r.status not in (200, 201):
                print(f"POST {name}: HTTP {r.status}", file=sys.stderr)
                sys.exit(1)
            with lock:
                out.append((name, t))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for name, t in out:
        print(name, t)


if __name__ == "__main__":
    main()
