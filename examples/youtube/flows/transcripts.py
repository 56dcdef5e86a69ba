# flows/transcripts.py: step 2 of the seed tutorial, run by asflowd.
#
#   python3 -m flows.transcripts
#
# Awaits the playlist flow (the same run), then fetches one transcript per
# video, at most 4 at a time across every process using this task. A video
# whose transcripts are disabled is suppressed (data/transcripts/ID.err, never
# asked again); a malformed answer is skipped (asked again next run); a
# failed request is retried once; anything else fails the run at once.
# The fetches go through the throttle key `youtube` (as transcripts.flow.yaml
# defines it, so the two share it), and a 429 holds every fetch back for the
# server's Retry-After without counting an attempt.

import asyncio
import xml.etree.ElementTree

import youtube_transcript_api

from asflow import flow
from asflow.throttle import Cooldown

import flows.playlist

flow.throttle("youtube", limit=4, rate="2/s")


@flow.task(
    on="data/transcripts/{video_id}.jsonl.zst",
    limit=4,  # Limit concurrency to 4
    skip=(xml.etree.ElementTree.ParseError,),
    suppress=(youtube_transcript_api.TranscriptsDisabled,),
    retry=1,
    retry_exceptions=(youtube_transcript_api.YouTubeRequestFailed,),
    uses=["youtube"],
    cooldown=Cooldown(message=r"429|Too Many Requests", retry_after=r"Retry-After: (\d+)"),
)
async def extract(video_id):
    ytt_api = youtube_transcript_api.YouTubeTranscriptApi()

    # Offload blocking fetch() call to thread pool
    fetched_transcript = await asyncio.to_thread(ytt_api.fetch, video_id)
    for snippet in fetched_transcript.to_raw_data():
        flow.task.write(snippet)


@flow
async def transcripts():
    playlist = await flows.playlist.playlist()

    # Use TaskGroup to run tasks concurrently
    async with asyncio.TaskGroup() as tg:
        for video_id in playlist["id"]:
            tg.create_task(extract(video_id))


if __name__ == "__main__":
    asyncio.run(transcripts())
