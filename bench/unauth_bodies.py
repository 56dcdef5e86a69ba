#!/usr/bin/python3
"""What unauthenticated request bodies cost asflowd (issue 12, defect 6).

Starts asflowd with a TCP listener and a token, sends N concurrent
SubmitFlow calls of SIZE bytes each without a token (or with a wrong one),
checks every one is refused with UNAUTHENTICATED, and prints the daemon's
RSS before, its peak (VmHWM) and its RSS after, in MiB.

  bench/unauth_bodies.py [--build build] [--calls 20] [--mib 15] [--rounds 3]

Needs python3-grpcio and build/python's stubs (built with the tree).
"""
import argparse
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("ASFLOW_BUILD", "build"))
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--mib", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    sys.path.insert(0, os.path.join(build, "python"))
    import grpc
    from asflow.v1 import service_pb2

    with tempfile.TemporaryDirectory() as tmp:
        token = os.path.join(tmp, "token")
        with open(token, "w") as f:
            f.write("bench-token\n")
        log = open(os.path.join(tmp, "asflowd.log"), "w+")
        daemon = subprocess.Popen(
            [os.path.join(build, "server/asflowd"), "--socket", os.path.join(tmp, "d.sock"),
             "--state", os.path.join(tmp, "state.db"), "--allow-root", tmp,
             "--listen", "127.0.0.1:0", "--token-file", token],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            port = None
            for _ in range(100):
                log.seek(0)
                m = re.search(r"listening on tcp [0-9.]+:([0-9]+)", log.read())
                if m:
                    port = int(m.group(1))
                    break
                time.sleep(0.1)
            if port is None:
                sys.exit("asflowd did not start")
            time.sleep(0.5)
            before = status_kib(daemon.pid, "VmRSS")
            request = service_pb2.SubmitFlowRequest(workspace=tmp)
            request.params["big"] = "x" * (args.mib << 20)
            body = request.SerializeToString()
            codes = {}
            channels = [grpc.insecure_channel(f"127.0.0.1:{port}",
                                              options=[("grpc.max_send_message_length", 64 << 20)])
                        for _ in range(args.calls)]
            for _ in range(args.rounds):
                def call(i):
                    stub = channels[i].unary_unary("/asflow.v1.FlowService/SubmitFlow")
                    md = [("authorization", "Bearer wrong")] if i % 2 else []
                    try:
                        stub(body, metadata=md, timeout=60)
                        return "OK"
                    except grpc.RpcError as e:
                        return e.code().name
                with concurrent.futures.ThreadPoolExecutor(args.calls) as pool:
                    for code in pool.map(call, range(args.calls)):
                        codes[code] = codes.get(code, 0) + 1
            time.sleep(1)
            after = status_kib(daemon.pid, "VmRSS")
            peak = status_kib(daemon.pid, "VmHWM")
            for c in channels:
                c.close()
            print(f"{args.rounds} x {args.calls} unauthenticated SubmitFlow of {len(body) / 2**20:.1f} MiB: {codes}")
            print(f"asflowd RSS before {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
                  f"after {after / 1024:.1f} MiB")
            if set(codes) != {"UNAUTHENTICATED"}:
                sys.exit("a call was not refused with UNAUTHENTICATED")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)


if __name__ == "__main__":
    main()
