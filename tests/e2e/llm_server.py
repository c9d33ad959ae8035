"""A scripted LLM server for the tests: OpenAI, Anthropic and Ollama shapes.

Runs in a thread of the test process (or on its own for benchmarks) on
127.0.0.1, standard library only. One server answers all three protocols,
each in its own shape, chosen by the path of the request:

    POST /v1/chat/completions   OpenAI chat completions   base_url: srv.url
    POST /v1/messages           Anthropic Messages        base_url: srv.anthropic_url
    POST /api/chat              Ollama's native chat      base_url: srv.ollama_url

and embeddings, kept apart from the chat requests and steps:

    POST /v1/embeddings         OpenAI embeddings         base_url: srv.url
    POST /api/embed             Ollama's embeddings       base_url: srv.ollama_url

Each text's vector (embed_dim numbers, normalised) is the sum of one fixed
pseudo-random vector per word, the word first mapped through SYNONYMS, so
"automobiles" and "cars" come out the same while sharing no letters a text
search would match; the same text always gets the same vector. Set
srv.embed_status = 503 (any status) to make every embeddings request fail,
srv.embed_delay to slow them; srv.embed_requests, srv.embed_paths and
srv.embed_texts record what came, reset_embed_counts() starts them again.

Any other path is 404. Answers carry usage (prompt tokens estimated as
characters / 4). Without a script it echoes the last user message
("echo: ..."), or answers with the text given to reply(). script() queues
steps, each used by one request (whatever its path), in order:

    {"text": "hello"}                 answer with this text
    {"tool_calls": [{"name": "everything__echo", "arguments": {"message": "hi"}}]}
                                      ask for tools, in the shape of the path called
                                      (ids are made up unless a call gives "id"; a
                                      string "arguments" is sent as given, so invalid
                                      JSON can be tested; "text" may come along)
    {"status": 429, "headers": {"Retry-After": "1"}}
    {"status": 500}                   an error body in the path's shape (Anthropic:
                                      {"type": "error", "error": {...}}, 529 is
                                      overloaded_error; Ollama: {"error": "..."})
    {"delay": 3.0}                    wait, then go on with the rest of the step
    {"gate": threading.Event()}       hold the answer until the event is set (at most
                                      "gate_timeout" seconds, default 60), then go on
    {"body": "not json"}              this exact body (status 200 unless given)
    {"json": {...}}                   this JSON document as the body
    {"choices": []}                   an OpenAI answer with these choices
    {"content": []}                   an Anthropic answer with these content blocks
    {"close": True}                   hang up without answering
    {"usage": {...}, "finish_reason": "length", "model": "m"}   shape the answer:
                                      usage replaces OpenAI's and Anthropic's usage
                                      object and is merged into Ollama's answer
                                      (prompt_eval_count, eval_count); finish_reason
                                      is finish_reason / stop_reason / done_reason

Usage:
    srv = ScriptedLLM(); srv.start()
    config = f"llm:\\n  providers:\\n    openai:\\n      base_url: {srv.url}\\n"
    ...
    srv.requests   # the JSON bodies received, in order
    srv.paths      # the path of each of them ("/v1/messages", ...)
    srv.stop()

Standalone: `python3 tests/e2e/llm_server.py --port 0` prints the OpenAI base
URL (Anthropic and Ollama providers use it without the /v1) and serves until
interrupted (--delay adds a fixed latency per answer).
"""
import argparse
import hashlib
import json
import math
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024 * 1024
CHAT_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
OLLAMA_PATH = "/api/chat"
PATHS = (CHAT_PATH, ANTHROPIC_PATH, OLLAMA_PATH)
EMBED_PATH = "/v1/embeddings"
OLLAMA_EMBED_PATH = "/api/embed"
EMBED_PATHS = (EMBED_PATH, OLLAMA_EMBED_PATH)
# words that mean the same to the scripted embedder
SYNONYMS = {"automobile": "car", "automobiles": "car", "cars": "car", "vehicle": "car",
            "vehicles": "car", "supplier": "vendor", "suppliers": "vendor", "vendors": "vendor"}


def embedding_of(text, dim):
    """The scripted embedder's vector for text: a sum of per-word vectors, normalised."""
    vec = [0.0] * dim
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        word = SYNONYMS.get(word, word)
        seed = hashlib.sha256(word.encode()).digest()
        while len(seed) < 2 * dim:
            seed += hashlib.sha256(seed).digest()
        for i in range(dim):
            vec[i] += (seed[2 * i] * 256 + seed[2 * i + 1]) / 32767.5 - 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [round(v / norm, 6) for v in vec]


def _block_text(content):
    """The text of a message's content: a string, or Anthropic-style blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b["text"] for b in content if isinstance(b, dict)
                 and b.get("type") == "text" and isinstance(b.get("text"), str)]
        if texts:
            return "".join(texts)
    return None


def _last_user_text(body):
    messages = body.get("messages") if isinstance(body, dict) else None
    for m in reversed(messages if isinstance(messages, list) else []):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            text = _block_text(content)
            if text is not None:
                return text
            # a user turn that only carries tool results (Anthropic): look further back
            if isinstance(content, list) and all(
                    isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
                continue
            return json.dumps(content)
    return ""


def _prompt_chars(body):
    messages = body.get("messages") if isinstance(body, dict) else None
    total = 0
    system = body.get("system") if isinstance(body, dict) else None
    if isinstance(system, str):
        total += len(system)
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else None
        text = _block_text(content)
        total += len(text) if text is not None else 0
    return total


def _arguments_object(arguments):
    """Tool call arguments as an object (Anthropic, Ollama): text is parsed when it can be."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return {} if arguments is None else arguments


def _arguments_text(arguments):
    """Tool call arguments as JSON text (OpenAI): a string is sent as given."""
    return arguments if isinstance(arguments, str) else json.dumps(
        {} if arguments is None else arguments)


def _error_body(path, status, message):
    if path == ANTHROPIC_PATH:
        kinds = {400: "invalid_request_error", 401: "authentication_error",
                 403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                 429: "rate_limit_error", 529: "overloaded_error"}
        kind = kinds.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if path == OLLAMA_PATH:
        return {"error": message}
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # many clients connect at once in load tests
    owner = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has a Content-Length

    def setup(self):
        super().setup()
        # headers and body are separate writes: without this, Nagle's
        # algorithm and delayed ACKs add 40 ms to every answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server_version = "ScriptedLLM/1"

    def log_message(self, fmt, *args):  # quiet: tests read their own output
        pass

    def _send(self, status, payload, headers=None, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else payload.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # the client gave up while the answer was held (killed, timed out)
            self.close_connection = True

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send(411, json.dumps({"error": {"message": "Content-Length required"}}))
            return None
        if int(length) > MAX_BODY:
            self.close_connection = True
            self._send(413, json.dumps({"error": {"message": "request too large"}}))
            return None
        return self.rfile.read(int(length))

    def do_GET(self):
        self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))

    def do_POST(self):
        raw = self._read_body()
        if raw is None:
            return
        path = self.path.split("?", 1)[0]
        if path in EMBED_PATHS:
            self._embed(raw, path)
            return
        if path not in PATHS:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        owner = self.server.owner
        step = owner._begin(body, dict(self.headers.items()), path)
        try:
            self._answer(owner, step, body, path)
        finally:
            owner._end()

    def _embed(self, raw, path):
        owner = self.server.owner
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        status, delay, dim = owner._embed_begin(body, path, texts)
        if delay > 0 and owner._stopping.wait(delay):
            self.close_connection = True
            return
        if status:
            shape = OLLAMA_PATH if path == OLLAMA_EMBED_PATH else CHAT_PATH
            self._send(status, json.dumps(_error_body(shape, status, f"scripted error {status}")))
            return
        if not isinstance(texts, list) or not texts or not all(
                isinstance(t, str) and t for t in texts):
            self._send(400, json.dumps({"error": {"message": "input must be a list of texts"}}))
            return
        vectors = [embedding_of(t, dim) for t in texts]
        if path == OLLAMA_EMBED_PATH:
            answer = {"model": body.get("model"), "embeddings": vectors,
                      "prompt_eval_count": sum(len(t) // 4 for t in texts)}
        else:
            answer = {"object": "list", "model": body.get("model"),
                      "data": [{"object": "embedding", "index": i, "embedding": v}
                               for i, v in enumerate(vectors)],
                      "usage": {"prompt_tokens": sum(len(t) // 4 for t in texts),
                                "total_tokens": sum(len(t) // 4 for t in texts)}}
        self._send(200, json.dumps(answer))

    def _answer(self, owner, step, body, path):
        delay = float(step.get("delay", 0) or 0) + owner.latency
        if delay > 0 and owner._stopping.wait(delay):
            self.close_connection = True
            return
        gate = step.get("gate")
        if gate is not None and not owner._pass_gate(gate, float(step.get("gate_timeout", 60))):
            self.close_connection = True
            return
        if step.get("close"):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        status = int(step.get("status", 200))
        headers = step.get("headers") or {}
        if "body" in step:
            self._send(status, step["body"], headers)
        elif "json" in step:
            self._send(status, json.dumps(step["json"]), headers)
        elif status >= 400:
            error = _error_body(path, status, step.get("message", f"scripted error {status}"))
            self._send(status, json.dumps(error), headers)
        else:
            self._send(status, json.dumps(owner._completion(step, body, path)), headers)


class ScriptedLLM:
    """One scripted provider on 127.0.0.1 (port 0 unless given)."""

    def __init__(self, port=0, latency=0.0):
        self._lock = threading.Lock()
        self._steps = []
        self._reply = None
        self._requests = []
        self._headers = []
        self._paths = []
        self._stopping = threading.Event()
        self._count = 0
        self.latency = latency
        self.embed_dim = 64
        self.embed_status = None
        self.embed_delay = 0.0
        self._embed_requests = []
        self._embed_paths = []
        self._embed_texts = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self._thread = None

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def url(self):
        """The base_url for an openai provider: http://127.0.0.1:PORT/v1"""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self):
        """http://127.0.0.1:PORT, the base_url for the anthropic and ollama types"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def anthropic_url(self):
        """The base_url for an anthropic provider (it adds /v1/messages)."""
        return self.root_url

    @property
    def ollama_url(self):
        """The base_url for an ollama provider (it adds /api/chat)."""
        return self.root_url

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def reply(self, text):
        """The answer when no step is queued (None: echo again)."""
        with self._lock:
            self._reply = text

    def script(self, steps):
        """Queues steps; each request takes the next one."""
        with self._lock:
            self._steps.extend(dict(s) for s in steps)

    @property
    def pending(self):
        """Steps not used yet."""
        with self._lock:
            return len(self._steps)

    @property
    def requests(self):
        """The JSON bodies received, in order (a string when not JSON)."""
        with self._lock:
            return list(self._requests)

    @property
    def headers(self):
        """The request headers received, in order (dicts)."""
        with self._lock:
            return list(self._headers)

    @property
    def paths(self):
        """The path of each request received, in order (as srv.requests)."""
        with self._lock:
            return list(self._paths)

    @property
    def embed_requests(self):
        """The embeddings request bodies received, in order."""
        with self._lock:
            return list(self._embed_requests)

    @property
    def embed_paths(self):
        with self._lock:
            return list(self._embed_paths)

    @property
    def embed_texts(self):
        """Every text asked to embed, in order."""
        with self._lock:
            return list(self._embed_texts)

    def reset_embed_counts(self):
        with self._lock:
            self._embed_requests = []
            self._embed_paths = []
            self._embed_texts = []

    def _embed_begin(self, body, path, texts):
        """Records one embeddings request; its status (None: answer), delay and dimension."""
        with self._lock:
            self._embed_requests.append(body)
            self._embed_paths.append(path)
            if isinstance(texts, list):
                self._embed_texts.extend(t for t in texts if isinstance(t, str))
            return self.embed_status, self.embed_delay, self.embed_dim

    def wait_for_requests(self, count, timeout=10.0):
        """Waits until count requests arrived; returns whether they did."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if len(self._requests) >= count:
                    return True
            time.sleep(0.01)
        return False

    def _pass_gate(self, gate, timeout):
        """Waits for gate (at most timeout seconds); False when the server stops first."""
        end = time.monotonic() + timeout
        while not gate.is_set() and time.monotonic() < end:
            if self._stopping.wait(0.02):
                return False
        return True

    def _begin(self, body, headers, path=CHAT_PATH):
        with self._lock:
            self._requests.append(body)
            self._headers.append(headers)
            self._paths.append(path)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self._steps.pop(0) if self._steps else {}

    def _end(self):
        with self._lock:
            self.in_flight -= 1

    def _completion(self, step, body, path=CHAT_PATH):
        with self._lock:
            self._count += 1
            serial = self._count
            default = self._reply
        calls = step.get("tool_calls")
        if "text" in step:
            text = step["text"]
        elif calls:
            text = None  # only tools asked for
        elif default is not None:
            text = default
        else:
            text = "echo: " + _last_user_text(body)
        model = body.get("model") if isinstance(body, dict) else None
        prompt_tokens = _prompt_chars(body) // 4
        completion_tokens = len(text) // 4 if isinstance(text, str) else 0
        shape = {ANTHROPIC_PATH: self._anthropic, OLLAMA_PATH: self._ollama}.get(
            path, self._openai)
        return shape(step, serial, text, calls or [], step.get("model", model or "scripted"),
                     prompt_tokens, completion_tokens)

    @staticmethod
    def _openai(step, serial, text, calls, model, prompt_tokens, completion_tokens):
        choices = step.get("choices")
        if choices is None:
            message = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = [
                    {"id": c.get("id", f"call_scripted_{serial}_{i}"), "type": "function",
                     "function": {"name": c["name"],
                                  "arguments": _arguments_text(c.get("arguments"))}}
                    for i, c in enumerate(calls)]
            finish = step.get("finish_reason", "tool_calls" if calls else "stop")
            choices = [{"index": 0, "message": message, "finish_reason": finish}]
        usage = step.get("usage", {"prompt_tokens": prompt_tokens,
                                   "completion_tokens": completion_tokens,
                                   "total_tokens": prompt_tokens + completion_tokens})
        return {"id": f"chatcmpl-scripted-{serial}", "object": "chat.completion",
                "created": int(time.time()), "model": model, "choices": choices, "usage": usage}

    @staticmethod
    def _anthropic(step, serial, text, calls, model, prompt_tokens, completion_tokens):
        content = step.get("content")
        if content is None:
            content = [{"type": "text", "text": text}] if text else []
            content += [{"type": "tool_use", "id": c.get("id", f"toolu_scripted_{serial}_{i}"),
                         "name": c["name"], "input": _arguments_object(c.get("arguments"))}
                        for i, c in enumerate(calls)]
        stop = step.get("finish_reason", "tool_use" if calls else "end_turn")
        usage = step.get("usage", {"input_tokens": prompt_tokens,
                                   "output_tokens": completion_tokens})
        return {"id": f"msg_scripted_{serial}", "type": "message", "role": "assistant",
                "model": model, "content": content, "stop_reason": stop, "stop_sequence": None,
                "usage": usage}

    @staticmethod
    def _ollama(step, serial, text, calls, model, prompt_tokens, completion_tokens):
        message = {"role": "assistant", "content": text or ""}
        if calls:
            message["tool_calls"] = []
            for c in calls:
                one = {"function": {"name": c["name"],
                                    "arguments": _arguments_object(c.get("arguments"))}}
                if "id" in c:
                    one["id"] = c["id"]
                message["tool_calls"].append(one)
        answer = {"model": model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "message": message, "done": True,
                  "done_reason": step.get("finish_reason", "stop"),
                  "prompt_eval_count": prompt_tokens, "eval_count": completion_tokens}
        answer.update(step.get("usage", {}))
        return answer


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="A scripted LLM server (OpenAI, Anthropic and Ollama shapes).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default=None, help="answer with this text instead of an echo")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    srv = ScriptedLLM(port=args.port, latency=args.delay)
    if args.reply is not None:
        srv.reply(args.reply)
    srv.start()
    print(srv.url, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
