#!/usr/bin/env python3
"""A tiny stand-in for YouTube on loopback, for the offline tutorial and its
test. Prints "http://127.0.0.1:PORT" on its first line, then serves:

  GET /@fixture/playlist.jsonl   ten videos, one JSON object per line
  GET /transcript/ID             the video's transcript as a JSON array
  GET /stats                     requests per transcript id, as JSON

Videos vid03 and vid07 have transcripts disabled (403 TranscriptsDisabled),
vid05 returns malformed JSON, vid08 fails with 503 on its first request.

Told to throttle (--throttle K), it answers the first K transcript requests
of every --window seconds with 429 Too Many Requests and Retry-After:
--retry-after, as YouTube does to a client that asks too fast (those are
not counted in /stats). --delay holds every transcript answer that long,
so requests that overlap in the client overlap here too. --log FILE
appends one line per transcript request: its arrival and answer times
(epoch seconds), the status, the transcript requests in flight when it
arrived (itself included) and the path.

usage: fixture_server.py [--port N] [--throttle K] [--window S]
                         [--retry-after S] [--delay S] [--log FILE]
       (port 0, the default, picks a free port)
"""
import argparse
import collections
import http.server
import json
import sys
import threading
import time

VIDEOS = [f"vid{i:02d}" for i in range(1, 11)]
DISABLED = {"vid03", "vid07"}
MALFORMED = {"vid05"}
FLAKY = {"vid08"}

requests = collections.Counter()
lock = threading.Lock()
options = argparse.Namespace(throttle=0, window=60.0, retry_after=2, delay=0.0, log=None)
started = time.time()
windows = collections.Counter()  # transcript requests per window
in_flight = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body, content_type="application/json", headers=()):
        data = body.encode("utf-8")
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global in_flight
        if self.path.endswith("/playlist.jsonl"):
            lines = [json.dumps({"id": v, "title": f"Video {v}", "duration": 60 + i * 7,
                                 "url": f"https://www.youtube.com/watch?v={v}"})
                     for i, v in enumerate(VIDEOS)]
            return self.reply(200, "\n".join(lines) + "\n", "application/x-ndjson")
        if self.path == "/stats":
            with lock:
                return self.reply(200, json.dumps(dict(requests)))
        if self.path.startswith("/transcript/"):
            arrived = time.time()
            with lock:
                in_flight += 1
                concurrent = in_flight
            code = 0
            try:
                if options.delay > 0:
                    time.sleep(options.delay)
                code = self.transcript(self.path[len("/transcript/"):], arrived)
            finally:
                with lock:
                    in_flight -= 1
                    if options.log:
                        with open(options.log, "a") as log:
                            log.write(f"{arrived:.6f} {time.time():.6f} {code} {concurrent} {self.path}\n")
            return None
        return self.reply(404, json.dumps({"error": "not found"}))

    def transcript(self, vid, arrived):
        """Answers a transcript request; returns the status it sent."""
        with lock:
            window = int((arrived - started) // options.window)
            windows[window] += 1
            throttled = windows[window] <= options.throttle
            if not throttled:
                requests[vid] += 1
            count = requests[vid]
        if throttled:
            self.reply(429, json.dumps({"error": "Too Many Requests"}),
                       headers=[("Retry-After", str(options.retry_after))])
            return 429
        if vid not in VIDEOS:
            self.reply(404, json.dumps({"error": "VideoUnavailable"}))
            return 404
        if vid in DISABLED:
            self.reply(403, json.dumps({"error": "TranscriptsDisabled"}))
            return 403
        if vid in MALFORMED:
            self.reply(200, '[{"start": 0.0, "text": "trunc')
            return 200
        if vid in FLAKY and count == 1:
            self.reply(503, json.dumps({"error": "try again"}))
            return 503
        segments = [{"start": i * 4.0, "duration": 4.0, "text": f"{vid} line {i}"} for i in range(25)]
        self.reply(200, json.dumps(segments))
        return 200


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--throttle", type=int, default=0,
                        help="answer the first K transcript requests of each window with 429")
    parser.add_argument("--window", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--retry-after", type=int, default=2, help="seconds, sent as Retry-After (default 2)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each transcript answer takes")
    parser.add_argument("--log", help="append one line per transcript request to this file")
    args = parser.parse_args()
    for name in ("throttle", "window", "retry_after", "delay", "log"):
        setattr(options, name, getattr(args, name))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
