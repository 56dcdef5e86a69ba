#!/usr/bin/env python3
"""W3-py / W1-py as a plain asyncio + python3-zstandard script: the
baseline of bench/py/run.py. The same writes as w_asflow.py: each task
gathers its JSON lines, compresses them into one zstd frame (default
level) and writes data/ID.jsonl.zst atomically (temporary file, rename),
at most LIMIT at once (an asyncio.Semaphore). No state is recorded.

Prints one JSON line: n, seconds, RSS before and peak.
"""

import argparse
import asyncio
import json
import os
import resource
import time

import zstandard


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
    a = p.parse_args()
    data = os.path.join(a.base, "data")
    os.makedirs(data, exist_ok=True)
    item_sh = os.path.join(a.base, "item.sh")
    cctx = zstandard.ZstdCompressor()

    def store(i, chunks):
        path = os.path.join(data, f"{i}.jsonl.zst")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(cctx.compress(b"".join(chunks)))
        os.rename(tmp, path)

    async def item(sem, i):
        async with sem:
            chunks = []
            if a.kind == "w3":
                for j in range(10):
                    chunks.append((json.dumps({"id": i, "j": j, "text": "lorem ipsum dolor sit amet"}) + "\n").encode())
            else:
                proc = await asyncio.create_subprocess_exec("sh", item_sh, str(i), stdout=asyncio.subprocess.PIPE)
                async for line in proc.stdout:
                    chunks.append(line)
                if await proc.wait() != 0:
                    raise RuntimeError(f"item.sh {i} exited with {proc.returncode}")
            store(i, chunks)

    async def bench():
        sem = asyncio.Semaphore(a.limit)
        async with asyncio.TaskGroup() as tg:
            for i in range(a.n):
                tg.create_task(item(sem, i))

    base = rss_kb()
    t0 = time.perf_counter()
    asyncio.run(bench())
    t = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": a.n, "seconds": t, "rss_base_kb": base, "rss_peak_kb": peak}))


if __name__ == "__main__":
    main()
