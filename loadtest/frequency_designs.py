#!/usr/bin/env python3
"""Redis's cost per new viewer of each way to store frequency caps, measured on one
redis-server of its own (a unix socket in a temporary directory, nothing kept).

    loadtest/frequency_designs.py [VIEWERS]     # 200 000 by default

For each design, VIEWERS new viewers each reserve a view of one frequency-capped campaign
(the case of `scripts/loadtest.sh`'s capped run: a random uid per request), 16 viewers per
write as a busy connection sends them. Prints Redis's CPU per viewer (INFO used_cpu_*, so
parsing and replies count too) and its memory per viewer (used_memory), twice each, in turns.

- commands: what regie does (`src/store/redis/frequency.rs`): ZREMRANGEBYSCORE, ZADD,
  PEXPIRE and ZCARD in one pipeline, a sorted set per viewer and campaign;
- script: the same sorted set, checked and written by a Lua walk in one EVALSHA per viewer;
- script, 8 viewers a call: that walk for eight viewers per EVALSHA (concurrent requests'
  calls gathered; one node only, since a script's keys must share a slot);
- script, a string per viewer: one key per viewer for every campaign (GET, then SET PX);
- list: a list per viewer and campaign, LPUSH (whose reply counts the views, expired ones
  too until the key expires: a returning viewer would need a trim as well) and PEXPIRE;
- a key per view: one key per view a cap allows, SET NX PX on the first (a new viewer's
  whole cost; a returning viewer tries the next ones): the least one command can cost.

Standard library only; needs redis-server on the PATH.
"""

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

NOW = 1_764_568_000_000
WINDOW_MS = 86_400_000
RESERVATION = "01JDXYZABCDEFGHJKMNPQRSTVW"
VIEWER = "0123456789abcdef0123456789abcdef"
PER_WRITE = 16

WALK = """
local now = tonumber(ARGV[1])
local replies = {}
for v = 1, #KEYS do
  local key, max, window = KEYS[v] .. ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local seen = redis.call('ZCARD', key)
  if seen >= max then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    seen = redis.call('ZCARD', key)
  end
  if seen < max then
    redis.call('ZADD', key, now, ARGV[2])
    redis.call('PEXPIRE', key, window)
    replies[v] = 1
  else
    replies[v] = 0
  end
end
return replies
"""

STRING_PER_VIEWER = """
local history = redis.call('GET', KEYS[1])
if not history then
  redis.call('SET', KEYS[1], ARGV[3] .. ':' .. ARGV[1], 'PX', ARGV[5])
  return 1
end
return 0
"""


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Redis:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buffer = b""

    def reply(self):
        """Reads one reply (nested arrays included) and returns it, roughly typed."""
        while b"\r\n" not in self.buffer:
            self.buffer += self.sock.recv(1 << 20)
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buffer) < n + 2:
                self.buffer += self.sock.recv(1 << 20)
            value, self.buffer = self.buffer[:n], self.buffer[n + 2 :]
            return value.decode()
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(command(*args))
        return self.reply()

    def info(self, field):
        for line in self.call("INFO", "all").split("\r\n"):
            if line.startswith(field + ":"):
                return float(line.split(":", 1)[1])
        raise RuntimeError(f"INFO has no {field}")


def viewer_key(n):
    return f"regie:{{v:{VIEWER}{n:08x}}}:freq:"


def commands_design(viewers, _scripts):
    out = []
    for n in viewers:
        key = viewer_key(n) + "3vision-visitez"
        out.append(
            command("ZREMRANGEBYSCORE", key, "-inf", NOW - WINDOW_MS)
            + command("ZADD", key, NOW, RESERVATION)
            + command("PEXPIRE", key, WINDOW_MS)
            + command("ZCARD", key)
        )
    return out, 4


def script_design(batch):
    def design(viewers, scripts):
        out = []
        for i in range(0, len(viewers), batch):
            keys = [viewer_key(n) for n in viewers[i : i + batch]]
            args = [NOW, RESERVATION, "3vision-visitez", 1_000_000, WINDOW_MS]
            out.append(command("EVALSHA", scripts["walk"], len(keys), *keys, *args))
        return out, 1

    return design


def string_design(viewers, scripts):
    out = []
    for n in viewers:
        args = [NOW, RESERVATION, "3vision-visitez", 1_000_000, WINDOW_MS]
        out.append(command("EVALSHA", scripts["string"], 1, f"regie:{{v:{VIEWER}{n:08x}}}:f", *args))
    return out, 1


def list_design(viewers, _scripts):
    out = []
    for n in viewers:
        key = viewer_key(n) + "3vision-visitez"
        out.append(
            command("LPUSH", key, f"{NOW}:{RESERVATION}")
            + command("PEXPIRE", key, WINDOW_MS)
        )
    return out, 2


def key_per_view_design(viewers, _scripts):
    out = []
    for n in viewers:
        key = viewer_key(n) + "3vision-visitez:0"
        out.append(command("SET", key, RESERVATION, "NX", "PX", WINDOW_MS))
    return out, 1


DESIGNS = [
    ("commands", commands_design),
    ("script", script_design(1)),
    ("script, 8 viewers a call", script_design(8)),
    ("script, a string per viewer", string_design),
    ("list", list_design),
    ("a key per view", key_per_view_design),
]


def measure(redis, scripts, design, count):
    redis.call("FLUSHALL")
    viewers = random.sample(range(1 << 31), count)
    writes, replies_per_write = design(viewers, scripts)
    cpu = redis.info("used_cpu_user") + redis.info("used_cpu_sys")
    memory = redis.info("used_memory")
    # PER_WRITE viewers' worth of calls per write, as a busy connection sends them.
    group = max(1, PER_WRITE // max(1, count // len(writes)))
    for i in range(0, len(writes), group):
        chunk = writes[i : i + group]
        redis.sock.sendall(b"".join(chunk))
        for _ in range(len(chunk) * replies_per_write):
            redis.reply()
    cpu = redis.info("used_cpu_user") + redis.info("used_cpu_sys") - cpu
    memory = redis.info("used_memory") - memory
    keys = int(redis.call("DBSIZE"))
    if keys < count * 0.99:
        raise RuntimeError(f"only {keys} keys for {count} viewers")
    return cpu * 1e6 / count, memory / count


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    if not shutil.which("redis-server"):
        sys.exit("redis-server is not on the PATH")
    work = tempfile.mkdtemp(prefix="regie-freq-")
    path = os.path.join(work, "redis.sock")
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", path, "--save", "", "--appendonly", "no", "--dir", work],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        redis = Redis(path)
        scripts = {"walk": redis.call("SCRIPT", "LOAD", WALK), "string": redis.call("SCRIPT", "LOAD", STRING_PER_VIEWER)}
        print(f"{count} new viewers per run, {PER_WRITE} viewers per write; Redis CPU and memory per viewer")
        results = {name: [] for name, _ in DESIGNS}
        for _ in range(2):
            for name, design in DESIGNS:
                results[name].append(measure(redis, scripts, design, count))
        for name, runs in results.items():
            cpu = " / ".join(f"{c:.1f}" for c, _ in runs)
            memory = " / ".join(f"{m:.0f}" for _, m in runs)
            print(f"{name:30} {cpu:>13} us   {memory:>11} B")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
