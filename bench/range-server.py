#!/usr/bin/env python3
"""A loopback HTTP server for the benchmarks: serves one directory with
single-range support (Range: bytes=A-B / A-), ETag and Content-Length, and
appends one line per request to LOG: "<path> <range> <bytes sent>".

Usage: range-server.py DIR PORT LOG
"""
import http.server
import os
import re
import sys

root, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = os.path.join(root, self.path.lstrip("/").split("?")[0])
        if not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = os.path.getsize(path)
        etag = '"%x-%x"' % (int(os.path.getmtime(path)), size)
        rng = self.headers.get("Range", "")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
        if m:
            start = int(m.group(1))
            end = int(m.group(2)) + 1 if m.group(2) else size
            end = min(end, size)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size))
        else:
            start, end = 0, size
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.end_headers()
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                b = f.read(min(left, 1 << 20))
                if not b:
                    break
                try:
                    self.wfile.write(b)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(b)
                left -= len(b)
        with open(log, "a") as l:
            l.write("%s %s %d\n" % (self.path, rng or "-", sent))


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
