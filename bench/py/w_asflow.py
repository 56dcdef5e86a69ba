#!/usr/bin/env python3
"""W3-py / W1-py through the asflow package and asflowd (bench/py/run.py).

  w_asflow.py --kind w3 --n 20000 --limit 2 --base DIR
    N async tasks, each writing 10 JSON lines to data/ID.jsonl.zst
  w_asflow.py --kind w1 --n 2000 --limit 4 --base DIR
    N async tasks, each running `sh item.sh ID` and writing its lines

One flow call, a TaskGroup fanning out N task calls. Prints one JSON line:
n, seconds from the flow call to its return (every state committed by the
daemon: a run's close is answered after its instances' states are in
SQLite), the process's RSS before the flow (after imports and connecting)
and its peak.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time

from asflow import Flow


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=["w3", "w1"], required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--progress", action="store_true")
    a = p.parse_args()
    flow = Flow(a.base)
    item_sh = os.path.join(a.base, "item.sh")

    if a.kind == "w3":
        @flow.task(on="data/{i}.jsonl.zst", limit=a.limit)
        async def item(i):
            for j in range(10):
                flow.task.write({"id": i, "j": j, "text": "lorem ipsum dolor sit amet"})
    else:
        @flow.task(on="data/{i}.jsonl.zst", limit=a.limit)
        async def item(i):
            proc = await asyncio.create_subprocess_exec("sh", item_sh, str(i), stdout=asyncio.subprocess.PIPE)
            async for line in proc.stdout:
                flow.task.write(line)
            if await proc.wait() != 0:
                raise RuntimeError(f"item.sh {i} exited with {proc.returncode}")

    @flow(progress=a.progress)
    async def bench():
        async with asyncio.TaskGroup() as tg:
            for i in range(a.n):
                tg.create_task(item(i))

    @flow(progress=False)
    async def warm():
        pass

    asyncio.run(warm())  # connect, so the baseline includes the session
    base = rss_kb()
    t0 = time.perf_counter()
    c0 = time.thread_time()
    asyncio.run(bench())
    t = time.perf_counter() - t0
    cpu_loop = time.thread_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine = flow.engine
    stream = getattr(engine, "stream", None)
    print(json.dumps({"n": a.n, "seconds": t, "rss_base_kb": base, "rss_peak_kb": peak,
                      "requests": getattr(stream, "requests_sent", 0), "ops": getattr(stream, "ops_sent", 0),
                      "responses": getattr(stream, "responses", 0), "cpu_loop": cpu_loop,
                      "cpu_reader": getattr(stream, "cpu_reader", 0.0), "cpu_sender": getattr(stream, "cpu_sender", 0.0),
                      "cpu_process": time.process_time(), "chained": getattr(engine, "chained", 0),
                      "chained_begun": getattr(engine, "chained_begun", 0),
                      "chained_late": getattr(engine, "chained_late", 0),
                      "chained_refused": getattr(engine, "chained_refused", 0)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
