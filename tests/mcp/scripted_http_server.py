#!/usr/bin/env python3
"""A small MCP server over Streamable HTTP whose misbehaviour the tests choose.

Usage: scripted_http_server.py --port-file FILE [--port N] [--record FILE]
  --port-file FILE   write the port it listens on (127.0.0.1) to FILE once ready
  --port N           listen on this port (default: any free one)
  --record FILE      append one JSON line per POST: {"headers": {...}, "body": ...}

Every POST to /mcp is one JSON-RPC message. initialize opens a session
(Mcp-Session-Id: s1, s2, ...); later messages must carry it (unknown: 404,
missing: 400). Notifications and responses get 202.

Tools (the test picks the behaviour by calling one):
  echo {text}        answers the text as one JSON body
  sse_echo {text}    answers on an SSE stream: a comment, a log notification, an
                     event of another type, the answer split over two data lines,
                     then keeps the stream open for 5 s
  big {size}         answers a text of size bytes as one JSON body
  sse_big {size}     answers a text of size bytes in one SSE event
  garbage            answers 200 with a body that is not JSON
  no_answer          answers 200 with an SSE stream that ends without the response
  expire             forgets every session, then answers 404
  fail500            answers HTTP 500
  deny               answers HTTP 401 with a body echoing the Authorization header
  big500             answers HTTP 500 with a 3 MB body
  hang {seconds}     answers after that many seconds (default 30)
  add_tool           answers on an SSE stream that also says the tool list changed;
                     from then on tools/list also offers `added`
  added              answers "added works"

Standard library only.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OBJECT_SCHEMA = {"type": "object", "properties": {}}
TOOLS = ["echo", "sse_echo", "big", "sse_big", "garbage", "no_answer", "expire", "fail500",
         "hang", "add_tool", "deny", "big500"]


class State:
    def __init__(self, record):
        self.lock = threading.Lock()
        self.sessions = set()
        self.next_session = 1
        self.added = False
        self.record = record


def parse_args(argv):
    opts = {"port_file": None, "port": 0, "record": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--port-file", "--record"):
            opts[arg[2:].replace("-", "_")] = argv[i + 1]
            i += 1
        elif arg == "--port":
            opts["port"] = int(argv[i + 1])
            i += 1
        else:
            sys.exit("scripted_http_server.py: unknown option " + arg)
        i += 1
    if not opts["port_file"]:
        sys.exit("scripted_http_server.py: --port-file is required")
    return opts


def text_result(text):
    return {"content": [{"type": "text", "text": text}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def raw(self, status, ctype, data):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def sse(self, chunks, linger=0.0):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(chunk.encode() if isinstance(chunk, str) else chunk)
                self.wfile.flush()
            time.sleep(linger)
        except OSError:
            pass
        self.close_connection = True

    def do_GET(self):
        self.reply(405, {"error": "no GET stream here"})

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        try:
            msg = json.loads(raw)
        except ValueError:
            self.reply(400, {"jsonrpc": "2.0", "id": None,
                             "error": {"code": -32700, "message": "Parse error"}})
            return
        if state.record:
            with state.lock, open(state.record, "a", encoding="utf-8") as f:
                f.write(json.dumps({"headers": dict(self.headers.items()), "body": msg}) + "\n")
        method = msg.get("method")
        session = self.headers.get("Mcp-Session-Id")
        if method == "initialize":
            with state.lock:
                sid = "s%d" % state.next_session
                state.next_session += 1
                state.sessions.add(sid)
            self.reply(200, {"jsonrpc": "2.0", "id": msg["id"], "result": {
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "scripted-http", "version": "1"}}},
                {"Mcp-Session-Id": sid})
            return
        if not session:
            self.reply(400, {"jsonrpc": "2.0", "id": msg.get("id"),
                             "error": {"code": -32000, "message": "no session"}})
            return
        with state.lock:
            known = session in state.sessions
        if not known:
            self.reply(404, {"jsonrpc": "2.0", "id": msg.get("id"),
                             "error": {"code": -32001, "message": "Session not found"}})
            return
        if "id" not in msg or method is None:
            self.reply(202)
            return
        if method == "tools/list":
            names = TOOLS + (["added"] if state.added else [])
            tools = [{"name": n, "description": n, "inputSchema": OBJECT_SCHEMA} for n in names]
            self.reply(200, {"jsonrpc": "2.0", "id": msg["id"], "result": {"tools": tools}})
            return
        if method == "tools/call":
            self.call(msg["id"], msg["params"]["name"], msg["params"].get("arguments") or {})
            return
        self.reply(200, {"jsonrpc": "2.0", "id": msg["id"],
                         "error": {"code": -32601, "message": "Method not found"}})

    def call(self, rid, name, args):
        state = self.server.state

        def answer(result):
            return {"jsonrpc": "2.0", "id": rid, "result": result}

        if name == "echo":
            self.reply(200, answer(text_result(args.get("text", ""))))
        elif name == "sse_echo":
            text = json.dumps(answer(text_result(args.get("text", ""))))
            half = len(text) // 2
            log = {"jsonrpc": "2.0", "method": "notifications/message",
                   "params": {"level": "info", "data": "working"}}
            self.sse([": keep-alive\r\n\r\n",
                      "data: " + json.dumps(log) + "\r\n\r\n",
                      "event: other\ndata: {\"not\": \"for us\"}\n\n",
                      "id: 7\ndata: " + text[:half] + "\n",
                      "data: " + text[half:] + "\n\n"], linger=5.0)
        elif name == "big":
            self.reply(200, answer(text_result("x" * int(args.get("size", 0)))))
        elif name == "sse_big":
            body = json.dumps(answer(text_result("y" * int(args.get("size", 0)))))
            self.sse(["data: " + body + "\n\n"])
        elif name == "garbage":
            self.raw(200, "application/json", b"this is not JSON at all")
        elif name == "no_answer":
            self.sse([": nothing follows\n\n"])
        elif name == "expire":
            with state.lock:
                state.sessions.clear()
            self.reply(404, {"jsonrpc": "2.0", "id": rid,
                             "error": {"code": -32001, "message": "Session not found"}})
        elif name == "fail500":
            self.raw(500, "text/plain", b"internal trouble")
        elif name == "deny":
            echoed = "denied for " + self.headers.get("Authorization", "")
            self.raw(401, "text/plain", echoed.encode())
        elif name == "big500":
            self.raw(500, "text/plain", b"x" * (3 * 1024 * 1024))
        elif name == "hang":
            time.sleep(float(args.get("seconds", 30)))
            try:
                self.reply(200, answer(text_result("late")))
            except OSError:
                pass
        elif name == "add_tool":
            with state.lock:
                state.added = True
            note = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
            self.sse(["data: " + json.dumps(note) + "\n\n",
                      "data: " + json.dumps(answer(text_result("added one"))) + "\n\n"])
        elif name == "added":
            self.reply(200, answer(text_result("added works")))
        else:
            self.reply(200, {"jsonrpc": "2.0", "id": rid,
                             "error": {"code": -32602, "message": "Unknown tool " + name}})


def main():
    opts = parse_args(sys.argv[1:])
    server = ThreadingHTTPServer(("127.0.0.1", opts["port"]), Handler)
    server.daemon_threads = True
    server.state = State(opts["record"])
    with open(opts["port_file"] + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.replace(opts["port_file"] + ".tmp", opts["port_file"])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
