"""A stand-in for youtube-transcript-api in offline mode (as offline/bin/yt-dlp
stands in for yt-dlp): YouTubeTranscriptApi().fetch(video_id) asks the
fixture server named by $YOUTUBE_TRANSCRIPT_API (offline/fixture_server.py)
and fails the way the real library does:

- 403 TranscriptsDisabled -> TranscriptsDisabled
- a 5xx, or 429 Too Many Requests (its Retry-After in the message) ->
  YouTubeRequestFailed
- a malformed answer -> xml.etree.ElementTree.ParseError (the real library
  parses YouTube's XML)

Put offline/python first on PYTHONPATH to use it."""

import json
import os
import urllib.error
import urllib.request
import xml.etree.ElementTree

__all__ = ["YouTubeTranscriptApi", "FetchedTranscript", "CouldNotRetrieveTranscript", "TranscriptsDisabled",
           "YouTubeRequestFailed"]


class CouldNotRetrieveTranscript(Exception):
    def __init__(self, video_id, cause=""):
        super().__init__(f"Could not retrieve a transcript for the video {video_id}: {cause}")
        self.video_id = video_id


class TranscriptsDisabled(CouldNotRetrieveTranscript):
    def __init__(self, video_id):
        super().__init__(video_id, "Subtitles are disabled for this video")


class YouTubeRequestFailed(CouldNotRetrieveTranscript):
    pass


class FetchedTranscript:
    def __init__(self, video_id, snippets):
        self.video_id = video_id
        self.snippets = snippets

    def to_raw_data(self):
        return [{"text": s["text"], "start": s["start"], "duration": s["duration"]} for s in self.snippets]


class YouTubeTranscriptApi:
    def __init__(self, base_url=None):
        self.base_url = base_url or os.environ.get("YOUTUBE_TRANSCRIPT_API")
        if not self.base_url:
            raise RuntimeError("offline youtube_transcript_api: set YOUTUBE_TRANSCRIPT_API to the fixture's URL")

    def fetch(self, video_id, languages=("en",)):
        url = f"{self.base_url.rstrip('/')}/transcript/{video_id}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            if e.code == 403 and "TranscriptsDisabled" in text:
                raise TranscriptsDisabled(video_id) from None
            retry_after = e.headers.get("Retry-After")
            cause = f"{e.code} {e.reason}" + (f"; Retry-After: {retry_after}" if retry_after else "")
            raise YouTubeRequestFailed(video_id, cause) from None
        try:
            return FetchedTranscript(video_id, json.loads(body))
        except ValueError as e:
            raise xml.etree.ElementTree.ParseError(f"no element found: {e}") from None
