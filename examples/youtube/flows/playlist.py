# flows/playlist.py: step 1 of the seed tutorial, run by asflowd.
#
#   python3 -m flows.playlist
#
# yt-dlp lists every video of the channel; its JSON lines are streamed to
# the daemon, which writes data/playlist.jsonl.zst atomically. Run it again
# and nothing is fetched: the file is there, so the call is cached.
# CHANNEL overrides the channel (the offline fixture's, in offline mode).

import asyncio
import os

import pandas as pd  # the tutorial uses Polars (pl.read_ndjson); pandas is in Debian

from asflow import flow

CHANNEL = os.environ.get("CHANNEL", "https://www.youtube.com/@MrBeast")


@flow.task(on="data/playlist.jsonl.zst")
async def extract(channel_url):
    proc = await asyncio.create_subprocess_exec(
        "yt-dlp", "--dump-json", "--flat-playlist", channel_url,
        stdout=asyncio.subprocess.PIPE,
    )
    async for line in proc.stdout:
        flow.task.write(line)
    if await proc.wait() != 0:
        raise RuntimeError(f"yt-dlp exited with {proc.returncode}")


@flow.task
def transform():
    return pd.read_json("data/playlist.jsonl.zst", lines=True)


@flow
async def playlist():
    await extract(CHANNEL)
    return transform()


if __name__ == "__main__":
    df = asyncio.run(playlist())
    print(df[["id", "title"]])
