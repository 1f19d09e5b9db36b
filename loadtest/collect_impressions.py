#!/usr/bin/env python3
"""Collects distinct impression beacon paths from a running regie, for scripts/loadtest.sh.

    collect_impressions.py BASE_URL COUNT OUT_FILE [--processes P] [--seconds S]

Asks BASE_URL for decisions with `POST /v1/decisions` over keep-alive connections until
it holds COUNT impression URLs or S seconds pass, and writes one `/v1/i/{token}` path per
line to OUT_FILE. Every decision has its own decision id, so every path is a distinct
impression: replaying them counts each once instead of hitting the de-duplication.

One batch asks for the four slots of the default inventory: a batch never shows the same
campaign twice, so asking for more slots fills no more of them (4 campaigns, the house one
included). P processes ask in parallel, because one Python process cannot keep regie busy.

Prints one JSON line on stdout: {"paths": N, "decisions": N, "requests": N, "seconds": S}.
"decisions" counts every filled decision received, each one a served decision in regie's
counters; it can exceed "paths" by a few, as the last batch of each process may bring more
than it still needs.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import time
import urllib.parse

SLOTS = ["banner", "Publicité 2", "Publicité 3", "Publicité 4"]
BODY = json.dumps({"slots": SLOTS}).encode()
# A browser's user agent: without one, regie takes the requests for a bot's (house ads only).
HEADERS = {
    "Content-Type": "application/json",
    "Connection": "keep-alive",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
}


def impression_path(url):
    """The path of an impression URL, whatever host REGIE_PUBLIC_URL gave it."""
    path = urllib.parse.urlsplit(url).path
    if not path.startswith("/v1/i/"):
        raise ValueError(f"not an impression URL: {url!r}")
    return path


def worker(base, count, deadline, out_file):
    """Writes `count` impression paths (fewer if `deadline` passes first) to `out_file`;
    returns (paths, decisions, requests)."""
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    paths = decisions = requests = 0
    with open(out_file, "w", encoding="ascii") as out:
        while paths < count and time.monotonic() < deadline:
            conn.request("POST", "/v1/decisions", body=BODY, headers=HEADERS)
            response = conn.getresponse()
            payload = response.read()
            requests += 1
            if response.status != 200:
                raise RuntimeError(
                    f"POST /v1/decisions answered {response.status}: {payload[:200]!r}"
                )
            for decision in json.loads(payload)["decisions"]:
                # A filled entry is the decision itself; an unfilled one has "decision": null.
                url = decision.get("impression_url")
                if url is None:
                    continue
                decisions += 1
                if paths < count:
                    out.write(impression_path(url) + "\n")
                    paths += 1
    conn.close()
    return paths, decisions, requests


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("count", type=int)
    parser.add_argument("out_file")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    started = time.monotonic()
    deadline = started + args.seconds
    processes = max(1, args.processes)
    shares = [
        args.count // processes + (1 if i < args.count % processes else 0)
        for i in range(processes)
    ]
    parts = [f"{args.out_file}.part{i}" for i in range(processes)]
    with multiprocessing.Pool(processes) as pool:
        results = pool.starmap(
            worker, [(args.base_url, share, deadline, part) for share, part in zip(shares, parts)]
        )

    # Each process's paths are distinct already: concatenate them.
    with open(args.out_file, "w", encoding="ascii") as out:
        for part in parts:
            with open(part, encoding="ascii") as f:
                out.write(f.read())
            os.remove(part)

    paths = sum(p for p, _, _ in results)
    decisions = sum(d for _, d, _ in results)
    requests = sum(r for _, _, r in results)
    print(json.dumps({
        "paths": paths,
        "decisions": decisions,
        "requests": requests,
        "seconds": round(time.monotonic() - started, 2),
    }))
    return 0 if paths else 1


if __name__ == "__main__":
    sys.exit(main())
