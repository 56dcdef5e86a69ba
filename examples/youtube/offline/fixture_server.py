#!/usr/bin/env python3
"""A tiny stand-in for YouTube on loopback, for the offline tutorial and its
test. Prints "http://127.0.0.1:PORT" on its first line, then serves:

  GET /@fixture/playlist.jsonl   ten videos, one JSON object per line
  GET /transcript/ID             the video's transcript as a JSON array
  GET /stats                     requests per transcript id, as JSON

Videos vid03 and vid07 have transcripts disabled (403 TranscriptsDisabled),
vid05 returns malformed JSON, vid08 fails with 503 on its first request.

usage: fixture_server.py [--port N]   (0, the default, picks a free port)
"""
import argparse
import collections
import http.server
import json
import sys
import threading

VIDEOS = [f"vid{i:02d}" for i in range(1, 11)]
DISABLED = {"vid03", "vid07"}
MALFORMED = {"vid05"}
FLAKY = {"vid08"}

requests = collections.Counter()
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body, content_type="application/json"):
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.endswith("/playlist.jsonl"):
            lines = [json.dumps({"id": v, "title": f"Video {v}", "duration": 60 + i * 7,
                                 "url": f"https://www.youtube.com/watch?v={v}"})
                     for i, v in enumerate(VIDEOS)]
            return self.reply(200, "\n".join(lines) + "\n", "application/x-ndjson")
        if self.path == "/stats":
            with lock:
                return self.reply(200, json.dumps(dict(requests)))
        if self.path.startswith("/transcript/"):
            vid = self.path[len("/transcript/"):]
            with lock:
                requests[vid] += 1
                count = requests[vid]
            if vid not in VIDEOS:
                return self.reply(404, json.dumps({"error": "VideoUnavailable"}))
            if vid in DISABLED:
                return self.reply(403, json.dumps({"error": "TranscriptsDisabled"}))
            if vid in MALFORMED:
                return self.reply(200, '[{"start": 0.0, "text": "trunc')
            if vid in FLAKY and count == 1:
                return self.reply(503, json.dumps({"error": "try again"}))
            segments = [{"start": i * 4.0, "duration": 4.0, "text": f"{vid} line {i}"} for i in range(25)]
            return self.reply(200, json.dumps(segments))
        return self.reply(404, json.dumps({"error": "not found"}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
