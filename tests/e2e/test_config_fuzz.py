"""Hostile configuration files: random mutations of the shipped config and
of hand-written nasty YAML. `caxton config validate` must always answer with
a verdict (exit 0 or 1) and a message, never crash, hang or trip a sanitizer.
Deterministic: a fixed seed, a bounded number of cases."""
import os
import random

import pytest

from conftest import ROOT, SANITIZER_MARKS, run_cli

CASES = 150
SEED = 20261127

with open(os.path.join(ROOT, "packaging", "caxton.yaml"), "rb") as f:
    SHIPPED = f.read()

GOOD = b"""server:
  data_dir: /var/lib/caxton
  shutdown_timeout: 10s
api:
  listen: 127.0.0.1:8080
  workers: 4
  max_body: 1MB
  public: [/health, /health/deep, /metrics]
llm:
  providers:
    openai: { base_url: "https://api.example.test/v1", api_key: "${OPENAI_API_KEY:-x}" }
logging: { level: info }
"""

NASTY = {
    "billion_laughs": b"a: &a [x, x, x, x, x, x, x, x, x]\n"
                      + b"".join(b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n"
                                 % ((98 + i,) * 2 + (97 + i,) * 9) for i in range(8))
                      + b"llm:\n  providers:\n    p: *i\n",
    "alias_as_section": b"x: &x {listen: 1.2.3.4:5}\napi: *x\n",
    "deep_mapping": b"".join(b"  " * i + b"k%d:\n" % i for i in range(2000)),
    "deep_flow": b"api: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "huge_scalar": b"api:\n  listen: \"" + b"x" * 900000 + b"\"\n",
    "nul_byte": b"api:\n  listen: 127.0.0.1\x00:8080\n",
    "not_utf8": b"api:\n  listen: \"\xff\xfe:80\"\n",
    "bom": b"\xef\xbb\xbfapi:\n  workers: 2\n",
    "duplicate_keys": b"api:\n  workers: 2\n  workers: 3\n",
    "two_documents": b"api: {workers: 2}\n---\napi: {workers: 3}\n",
    "tag": b"api:\n  workers: !!python/object:os.system 2\n",
    "merge_key": b"base: &b {workers: 2}\napi:\n  <<: *b\n",
    "only_comment": b"# nothing\n",
    "scalar_root": b"just a string\n",
    "list_root": b"- a\n- b\n",
    "tabs": b"api:\n\tworkers: 2\n",
    "unterminated_quote": b"api:\n  listen: \"127.0.0.1:8080\n",
    "env_loop": b"api:\n  listen: ${A:-${B:-${C}}}\n",
    "env_unterminated": b"api:\n  listen: ${NOPE\n",
    "long_key": b"api:\n  " + b"k" * 100000 + b": 1\n",
    "many_keys": b"api:\n" + b"".join(b"  k%d: 1\n" % i for i in range(20000)),
    "int_overflow": b"api:\n  workers: 99999999999999999999999999\n",
    "negative_size": b"api:\n  max_body: -1MB\n",
    "float_duration": b"server:\n  shutdown_timeout: 1e309s\n",
    # One long anchored string used hundreds of times: gigabytes if copied.
    "alias_byte_bomb": b"x: &a \"" + b"y" * 400000 + b"\"\nllm:\n  providers:\n    p:\n"
                       + b"".join(b"      k%d: *a\n" % i for i in range(900)),
    # Tens of thousands of anchors and aliases: quadratic in libyaml.
    "anchor_flood": b"".join(b"a%d: &x%d 1\n" % (i, i) for i in range(20000))
                    + b"".join(b"b%d: *x%d\n" % (i, i) for i in range(20000)),
}


def check(path):
    r = run_cli("config", "validate", str(path), timeout=60)
    text = r.stdout + r.stderr
    for mark in SANITIZER_MARKS:
        assert mark not in text, text[-3000:]
    assert r.returncode in (0, 1), (r.returncode, text[-2000:])
    assert text.strip(), "no verdict printed"
    return r


@pytest.mark.parametrize("name", sorted(NASTY))
def test_nasty_yaml(tmp_path, name):
    path = tmp_path / "caxton.yaml"
    path.write_bytes(NASTY[name])
    check(path)


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:                      # flip a byte
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:                             # insert YAML punctuation
            data[pos:pos] = rng.choice([b":", b"-", b"[", b"{", b"}", b"]", b"&a", b"*a",
                                        b"\t", b"\n  ", b"'", b'"', b"#", b"${X}", b"!!str "])
        elif op == 2 and data:                    # delete a run
            del data[pos:pos + rng.randint(1, 20)]
        elif op == 3 and data:                    # duplicate a run
            end = min(len(data), pos + rng.randint(1, 80))
            data[pos:pos] = data[pos:end]
        else:                                     # truncate
            del data[pos:]
    return bytes(data)


def test_random_mutations(tmp_path):
    rng = random.Random(SEED)
    verdicts = {0: 0, 1: 0}
    for i in range(CASES):
        path = tmp_path / f"m{i}.yaml"
        path.write_bytes(mutate(rng, rng.choice([SHIPPED, GOOD])))
        verdicts[check(path).returncode] += 1
    # The mutations must really exercise both answers.
    assert verdicts[0] > 0 and verdicts[1] > 0, verdicts
