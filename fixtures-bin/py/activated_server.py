"""A Python HTTP server started by socket activation: it takes its listening socket from fd
LISTEN_FDS passes (3) with socket.fromfd, checks LISTEN_PID against its own pid, prints
`ready`, and answers every GET with `python pid=<pid>`. For process-fixture's tests."""

import http.server
import os
import socket
import sys

if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
    sys.exit("activated_server.py: no socket passed (LISTEN_PID, LISTEN_FDS)")
sock = socket.fromfd(3, socket.AF_INET, socket.SOCK_STREAM)
os.close(3)  # fromfd duplicated it


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"python pid=%d" % os.getpid()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
server.socket = sock
print("ready", flush=True)
server.serve_forever()
