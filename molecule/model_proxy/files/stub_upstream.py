#!/usr/bin/env python3
"""A stand-in model server for the model_proxy scenario: plain HTTP on loopback.

    stub_upstream.py PORT

GET /v1/models     an OpenAI model list with one model, `stub`
POST /stream       three NDJSON lines, one second apart, chunked (like a streamed generation)
anything else      JSON echo of what arrived: method, path, Host, Authorization, body length
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STREAM_LINES = 3
STREAM_DELAY_S = 1.0


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1, so that the proxy can keep its connections to the stub open.
    protocol_version = "HTTP/1.1"

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return body
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _send_json(self, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index in range(STREAM_LINES):
            if index:
                time.sleep(STREAM_DELAY_S)
            line = json.dumps({"index": index, "done": index == STREAM_LINES - 1}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _handle(self) -> None:
        body = self._read_body()
        if self.command == "GET" and self.path == "/v1/models":
            self._send_json({"object": "list", "data": [{"id": "stub", "object": "model"}]})
        elif self.command == "POST" and self.path == "/stream":
            self._stream()
        else:
            self._send_json(
                {
                    "method": self.command,
                    "path": self.path,
                    "host": self.headers.get("Host"),
                    "authorization": self.headers.get("Authorization"),
                    "body_length": len(body),
                }
            )

    do_GET = do_POST = _handle


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
