#!/usr/bin/env python3
"""A small MCP server over stdio whose misbehaviour the tests choose.

Usage: scripted_server.py [options]
  --record FILE      append every line received to FILE
  --bad-tools        also list tools with an invalid schema, no schema, and an invalid name
  --paginate         list the tools one per page, following cursors
  --no-init          never answer initialize
  --version V        answer initialize with protocol version V
  --stderr           write a few lines to stderr at start
  --ignore-term      ignore SIGTERM (only SIGKILL stops it)

Tools (the test picks the behaviour by calling one):
  echo {text}        answers the text
  env {name}         answers the value of an environment variable
  cwd                answers the working directory
  hang               never answers
  die                exits with status 3 without answering
  big {size}         answers a text of size bytes
  garbage            writes three lines that are not JSON-RPC and never answers
  fail               answers a JSON-RPC error
  tool_error         answers a result with isError
  add_tool           announces a new tool `added` with notifications/tools/list_changed
  ping_me            pings the client and asks it for roots/list, then reports both answers
  noise              writes odd but harmless messages and one with an invalid id, then answers
  no_result          answers with neither a result nor an error
  bad_content        answers a result whose content is not a list
  close_stdout       closes its standard output and sleeps
  added              (once announced) answers "added works"

Standard library only; one message per line on stdin and stdout.
"""
import json
import os
import signal
import sys
import time

OBJECT_SCHEMA = {"type": "object", "properties": {}}


def parse_args(argv):
    opts = {"record": None, "bad_tools": False, "paginate": False, "no_init": False,
            "version": None, "stderr": False, "ignore_term": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--record":
            opts["record"] = argv[i + 1]
            i += 1
        elif arg == "--version":
            opts["version"] = argv[i + 1]
            i += 1
        elif arg in ("--bad-tools", "--paginate", "--no-init", "--stderr", "--ignore-term"):
            opts[arg[2:].replace("-", "_")] = True
        else:
            sys.exit("scripted_server.py: unknown option " + arg)
        i += 1
    return opts


class Server:
    def __init__(self, opts):
        self.opts = opts
        self.added = False
        self.next_id = 1

    def send(self, msg):
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    def read(self):
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        if self.opts["record"]:
            with open(self.opts["record"], "a", encoding="utf-8") as f:
                f.write(line)
        return json.loads(line)

    def tools(self):
        names = ["echo", "env", "cwd", "hang", "die", "big", "garbage", "fail", "tool_error",
                 "add_tool", "ping_me", "noise", "no_result", "bad_content", "close_stdout"]
        tools = [{"name": n, "description": "scripted " + n, "inputSchema": OBJECT_SCHEMA}
                 for n in names]
        if self.added:
            tools.append({"name": "added", "inputSchema": OBJECT_SCHEMA})
        if self.opts["bad_tools"]:
            tools.append({"name": "bad_schema", "inputSchema": "not an object"})
            tools.append({"name": "bad name!", "inputSchema": OBJECT_SCHEMA})
            tools.append({"name": "no_schema"})
        return tools

    def list_tools(self, msg):
        tools = self.tools()
        if not self.opts["paginate"]:
            return {"tools": tools}
        cursor = (msg.get("params") or {}).get("cursor")
        index = int(cursor) if cursor else 0
        result = {"tools": tools[index:index + 1]}
        if index + 1 < len(tools):
            result["nextCursor"] = str(index + 1)
        return result

    def text(self, text, is_error=False):
        result = {"content": [{"type": "text", "text": text}]}
        if is_error:
            result["isError"] = True
        return result

    def ask(self, method):
        """Sends a request to the client and waits for its answer."""
        rid = "srv-%d" % self.next_id
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": rid, "method": method})
        while True:
            msg = self.read()
            if msg.get("id") == rid and "method" not in msg:
                return msg

    def call(self, msg):
        params = msg.get("params") or {}
        name = params.get("name")
        args = params.get("arguments") or {}
        if name == "echo":
            return self.text(str(args.get("text", "")))
        if name == "env":
            return self.text(os.environ.get(args.get("name", ""), "(unset)"))
        if name == "cwd":
            return self.text(os.getcwd())
        if name == "hang":
            return None
        if name == "die":
            sys.stdout.flush()
            os._exit(3)
        if name == "big":
            return self.text("x" * int(args.get("size", 0)))
        if name == "garbage":
            sys.stdout.write("this is not json\n{\"jsonrpc\":\"1.0\",\"id\":1}\n")
            sys.stdout.buffer.write(b"\xff\xfe binary\n")
            sys.stdout.flush()
            return None
        if name == "fail":
            return {"__error__": {"code": -32000, "message": "boom"}}
        if name == "tool_error":
            return self.text("bad input", is_error=True)
        if name == "add_tool":
            self.added = True
            self.send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            return self.text("announced")
        if name == "added" and self.added:
            return self.text("added works")
        if name == "ping_me":
            ping = self.ask("ping")
            roots = self.ask("roots/list")
            ping_ok = ping.get("result") == {}
            code = (roots.get("error") or {}).get("code")
            return self.text("ping %s; roots/list %s" % ("ok" if ping_ok else "bad", code))
        if name == "noise":
            self.send({"jsonrpc": "2.0", "id": {}, "method": "odd"})
            self.send({"jsonrpc": "2.0", "method": "notifications/unknown"})
            self.send({"jsonrpc": "2.0", "id": 99999, "result": {}})
            self.send({"jsonrpc": "2.0", "method": "notifications/message",
                       "params": {"level": "info", "data": {"said": "hello"}}})
            self.send({"jsonrpc": "2.0", "id": None,
                       "error": {"code": -32700, "message": "parse error"}})
            return self.text("after noise")
        if name == "no_result":
            self.send({"jsonrpc": "2.0", "id": msg["id"]})
            return None
        if name == "bad_content":
            return {"content": "not a list"}
        if name == "close_stdout":
            sys.stdout.flush()
            os.close(1)
            while True:
                time.sleep(1)
        return {"__error__": {"code": -32602, "message": "unknown tool " + str(name)}}

    def answer(self, msg, result):
        if result is None:
            return
        if "__error__" in result:
            self.send({"jsonrpc": "2.0", "id": msg["id"], "error": result["__error__"]})
        else:
            self.send({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    def run(self):
        if self.opts["ignore_term"]:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.opts["stderr"]:
            sys.stderr.write("scripted server starting\nsecond stderr line\n")
            sys.stderr.flush()
        while True:
            msg = self.read()
            method = msg.get("method")
            if "id" not in msg:
                continue  # notifications: recorded, nothing to answer
            if method == "initialize":
                if self.opts["no_init"]:
                    continue
                version = self.opts["version"] or msg["params"]["protocolVersion"]
                self.answer(msg, {"protocolVersion": version,
                                  "capabilities": {"tools": {"listChanged": True}},
                                  "serverInfo": {"name": "scripted", "version": "1"}})
            elif method == "tools/list":
                self.answer(msg, self.list_tools(msg))
            elif method == "tools/call":
                self.answer(msg, self.call(msg))
            elif method == "ping":
                self.answer(msg, {})
            else:
                self.answer(msg, {"__error__": {"code": -32601, "message": "no " + str(method)}})


if __name__ == "__main__":
    Server(parse_args(sys.argv[1:])).run()
