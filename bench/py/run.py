#!/usr/bin/env python3
"""W3-py and W1-py: AsFlow-style Python code run by asflowd (the asflow
package) beside a plain asyncio + python3-zstandard script doing the same
writes, in the same run, on /dev/shm. See bench/README.md.

  bench/py/run.py [--reps 3] [--only W3,W1,W3-100k] [--quick] [--progress] [--daemon-b PATH]

W3-py: N = 20,000 async tasks, each writing 10 JSON lines to its own
data/ID.jsonl.zst, limit = CPU count. W3-100k: the same with N = 100,000,
for memory per task. W1-py: N = 2,000 tasks each running `sh item.sh ID`
(100 lines) and writing its lines, limit 4.

Each rep of the package starts a fresh asflowd (--no-sync off: outputs and
state are fsynced as in production; /dev/shm makes that cheap) and records
its RSS after start and its VmHWM and CPU before it stops. After the daemon
stops, the run's instances are read back from state.db: all N must be DONE
(durably recorded). Reps are interleaved (package, plain, package, ...);
medians are reported. --daemon-b PATH adds a third tool, `asflow-b`: the
package against another asflowd binary (a baseline build), interleaved
with the others, to compare two daemons in one session.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUILD = Path(os.environ.get("ASFLOW_BUILD", ROOT / "build"))
PY = "/usr/bin/python3"
PYTHONPATH = f"{ROOT / 'python'}:{BUILD / 'python'}"


def kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    def __init__(self, bench: Path, binary: Path) -> None:
        self.bench = bench
        self.sock = bench / "asflowd.sock"
        self.state = bench / "state.db"
        self.binary = binary

    def start(self) -> None:
        for p in (self.sock, self.state, Path(f"{self.state}-wal"), Path(f"{self.state}-shm")):
            p.unlink(missing_ok=True)
        log = open(self.bench / "asflowd.log", "ab")
        self.proc = subprocess.Popen([str(self.binary), "--socket", str(self.sock), "--state", str(self.state),
                                      "--allow-root", str(self.bench), "--pool-size", "8"],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"asflowd did not start: {(self.bench / 'asflowd.log').read_text()[-500:]}")
            time.sleep(0.02)
        time.sleep(0.1)
        self.base_kb = kb(self.proc.pid, "VmRSS")

    def stop(self) -> tuple[int, float]:
        hwm = kb(self.proc.pid, "VmHWM")
        cpu = cpu_s(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return hwm, cpu


def done_in_state(state: Path, n: int) -> int:
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        (count,) = db.execute("SELECT count(*) FROM instances WHERE state = 3 AND task LIKE '%.item'").fetchone()
    finally:
        db.close()
    return count


def check_outputs(ws: Path, n: int, lines: int) -> None:
    data = ws / "data"
    got = sum(1 for _ in data.iterdir())
    if got != n:
        sys.exit(f"{got} outputs in {data}, expected {n}")
    out = subprocess.run(["zstd", "-d", "-c", str(data / "1.jsonl.zst")], capture_output=True, check=True).stdout
    if out.count(b"\n") != lines:
        sys.exit(f"data/1.jsonl.zst has {out.count(chr(10).encode())} lines, expected {lines}")


def run_script(script: str, kind: str, n: int, limit: int, ws: Path, env: dict[str, str],
               extra: list[str]) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([PY, str(HERE / script), "--kind", kind, "--n", str(n), "--limit", str(limit),
                        "--base", str(ws), *extra], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{script} failed ({r.returncode}): {r.stderr[-2000:]}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", default="W3,W1")
    p.add_argument("--quick", action="store_true", help="small N, one rep: checks the driver")
    p.add_argument("--progress", action="store_true", help="the package with progress on (plain lines)")
    p.add_argument("--daemon-b", help="another asflowd binary, run as tool asflow-b")
    a = p.parse_args()
    cpus = os.cpu_count() or 1
    sizes = {"W3": (20000, cpus, 10), "W3-100k": (100000, cpus, 10), "W1": (2000, 4, 100)}
    if a.quick:
        sizes = {"W3": (500, cpus, 10), "W3-100k": (1000, cpus, 10), "W1": (50, 4, 100)}
        a.reps = 1
    work = [w for w in a.only.split(",") if w]
    for w in work:
        if w not in sizes:
            sys.exit(f"unknown workload {w} (W3, W3-100k, W1)")
    binary = BUILD / "server" / "asflowd"
    if not binary.exists():
        sys.exit(f"{binary} is not built")
    bench = Path(tempfile.mkdtemp(prefix="asflow-pybench.", dir="/dev/shm"))
    try:
        shutil.copy(binary, bench / "asflowd")
        shutil.copy(ROOT / "bench" / "item.sh", bench / "item.sh")
        daemon = Daemon(bench, bench / "asflowd")
        daemons = {"asflow": daemon}
        tools = ["asflow", "plain"]
        if a.daemon_b:
            shutil.copy(a.daemon_b, bench / "asflowd-b")
            daemons["asflow-b"] = Daemon(bench, bench / "asflowd-b")
            tools.append("asflow-b")
        env = dict(os.environ, PYTHONPATH=PYTHONPATH, ASFLOW_SERVER=f"unix:{daemon.sock}",
                   HOME=str(bench), XDG_RUNTIME_DIR=str(bench), XDG_STATE_HOME=str(bench))
        results: dict[tuple[str, str], list[dict]] = {}
        load0 = os.getloadavg()[0]
        for rep in range(a.reps):
            for w in work:
                n, limit, lines = sizes[w]
                kind = "w1" if w == "W1" else "w3"
                for tool in tools:
                    ws = bench / "ws"
                    shutil.rmtree(ws, ignore_errors=True)
                    ws.mkdir()
                    shutil.copy(bench / "item.sh", ws / "item.sh")
                    if tool in daemons:
                        daemon = daemons[tool]
                        daemon.start()
                        r = run_script("w_asflow.py", kind, n, limit, ws, env, ["--progress"] if a.progress else [])
                        r["daemon_base_kb"] = daemon.base_kb
                        r["daemon_hwm_kb"], r["daemon_cpu"] = daemon.stop()
                        r["durable"] = done_in_state(daemon.state, n)
                        if r["durable"] != n:
                            sys.exit(f"{w}: {r['durable']} of {n} instances DONE in state.db")
                    else:
                        r = run_script("w_plain.py", kind, n, limit, ws, env, [])
                    check_outputs(ws, n, lines)
                    results.setdefault((w, tool), []).append(r)
                    print(f"[pybench] {w} {tool} rep {rep + 1}: {r['seconds']:.3f}s "
                          f"({n / r['seconds']:.0f} tasks/s)", file=sys.stderr)
        load1 = os.getloadavg()[0]
        print(f"| workload | tool | N | median s | tasks/s | Python RSS/task | daemon RSS/task | daemon CPU s | "
              "Python CPU s (loop/reader/sender) | msgs up/down |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for (w, tool), rs in results.items():
            n = sizes[w][0]
            med = statistics.median(r["seconds"] for r in rs)
            py_kb = max(r["rss_peak_kb"] - r["rss_base_kb"] for r in rs)
            row = [w + "-py", tool, f"{n:,}", f"{med:.3f}", f"{n / med:,.0f}", f"{py_kb * 1024 / n:,.0f} B"]
            if tool in ("asflow", "asflow-b"):
                d_kb = max(r["daemon_hwm_kb"] - r["daemon_base_kb"] for r in rs)
                row += [f"{d_kb * 1024 / n:,.0f} B", f"{statistics.median(r['daemon_cpu'] for r in rs):.2f}",
                        f"{statistics.median(r['cpu_process'] for r in rs):.2f} "
                        f"({statistics.median(r['cpu_loop'] for r in rs):.2f}/"
                        f"{statistics.median(r['cpu_reader'] for r in rs):.2f}/"
                        f"{statistics.median(r['cpu_sender'] for r in rs):.2f})",
                        f"{statistics.median(r['requests'] for r in rs):,.0f}/"
                        f"{statistics.median(r['responses'] for r in rs):,.0f}"]
            else:
                row += ["-", "-", "-", "-"]
            print("| " + " | ".join(row) + " |")
        print()
        for (w, tool), rs in results.items():
            print(f"- {w}-py {tool}: " + ", ".join(f"{r['seconds']:.3f}" for r in rs) + " s")
        print(f"\nMachine: {os.cpu_count()} CPUs, load {load0:.2f} -> {load1:.2f}, /dev/shm, {sys.version.split()[0]}")
    finally:
        shutil.rmtree(bench, ignore_errors=True)


if __name__ == "__main__":
    main()
