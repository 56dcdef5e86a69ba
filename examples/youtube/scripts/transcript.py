#!/usr/bin/env python3
"""Prints the transcript of one video as JSON lines (video_id, start,
duration, text). Standard library only.

usage: transcript.py VIDEO_ID

The flow parameter `api` (in $ASFLOW_PARAM_api, set by asflow) chooses the
source: "youtube" (the default) asks yt-dlp for the video's subtitles; a
URL asks a transcript service at API/transcript/VIDEO_ID (the offline
fixture). Passing it through the environment keeps it out of the
instance's identity: the transcript of a video is the same whichever
source fetched it.

Exit codes follow the flow's error rules:
  0   printed the transcript
  3   transcripts are disabled for this video (suppressed: never asked again)
  75  a temporary failure (retried); for HTTP 429 the server's
      Retry-After is printed on stderr, and the flow's cooldown rule holds
      every fetch back that long without counting an attempt
  1   anything else; "ParseError" on stderr when the answer was malformed
      (skipped: asked again on the next run)
"""
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request


def fail(code, message):
    print(message, file=sys.stderr)
    sys.exit(code)


def from_service(api, video_id):
    url = f"{api.rstrip('/')}/transcript/{video_id}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        if e.code == 403 and "TranscriptsDisabled" in text:
            fail(3, f"TranscriptsDisabled: {video_id}")
        if e.code == 429:
            fail(75, f"HTTP 429 Too Many Requests for {url}\nRetry-After: {e.headers.get('Retry-After', '')}")
        if e.code >= 500:
            fail(75, f"TransientError: HTTP {e.code} for {url}")
        fail(1, f"HTTP {e.code} for {url}: {text[:200]}")
    except (urllib.error.URLError, TimeoutError) as e:
        fail(75, f"TransientError: {url}: {e}")
    try:
        segments = json.loads(body)
        return [(float(s["start"]), float(s["duration"]), str(s["text"])) for s in segments]
    except (ValueError, KeyError, TypeError) as e:
        fail(1, f"ParseError: {video_id}: {e}")


def from_youtube(video_id):
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["yt-dlp", "--skip-download", "--write-subs", "--write-auto-subs",
             "--sub-langs", "en.*", "--sub-format", "json3",
             "-o", os.path.join(tmp, "%(id)s"),
             f"https://www.youtube.com/watch?v={video_id}"],
            capture_output=True, text=True)
        if proc.returncode != 0:
            if "HTTP Error 429" in proc.stderr:
                fail(75, f"HTTP 429 Too Many Requests: {proc.stderr.strip()[-300:]}")
            if "HTTP Error 5" in proc.stderr or "timed out" in proc.stderr:
                fail(75, f"TransientError: {proc.stderr.strip()[-300:]}")
            fail(1, proc.stderr.strip()[-500:])
        files = [f for f in os.listdir(tmp) if f.endswith(".json3")]
        if not files:
            fail(3, f"TranscriptsDisabled: no subtitles for {video_id}")
        try:
            with open(os.path.join(tmp, files[0]), encoding="utf-8") as f:
                events = json.load(f)["events"]
            out = []
            for ev in events:
                text = "".join(seg.get("utf8", "") for seg in ev.get("segs", [])).strip()
                if text:
                    out.append((ev["tStartMs"] / 1000.0, ev.get("dDurationMs", 0) / 1000.0, text))
            return out
        except (ValueError, KeyError, TypeError) as e:
            fail(1, f"ParseError: {video_id}: {e}")


def main():
    if len(sys.argv) < 2:
        fail(2, __doc__)
    video_id = sys.argv[1]
    api = os.environ.get("ASFLOW_PARAM_api", "youtube")
    segments = from_youtube(video_id) if api == "youtube" else from_service(api, video_id)
    for start, duration, text in segments:
        print(json.dumps({"video_id": video_id, "start": start, "duration": duration, "text": text},
                         ensure_ascii=False))


if __name__ == "__main__":
    main()
