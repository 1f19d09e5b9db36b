#!/usr/bin/env python3
"""Instructions per request of two callgrind profiles, by crate and by function.

    callgrind_by_crate.py REGIE.cg REGIE_REQUESTS BARE.cg BARE_REQUESTS [TOP]

Sums each function's own instructions (callgrind's `Ir`, calls excluded) from the raw profile
files, divides by the requests each server answered, and prints the totals, then the crates
and the TOP (30) functions by how many more instructions per request regie spends than the
bare handler. Written for loadtest/instructions.sh.
"""

import collections
import re
import sys

FN = re.compile(r"(c?fn)=\((\d+)\)(?: (.*))?")


def own_cost(path):
    """Instructions per function name, calls excluded."""
    names, cost = {}, collections.Counter()
    current, after_calls = None, False
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            match = FN.match(line)
            if match:
                kind, number, name = match.groups()
                if name:
                    names[number] = name
                if kind == "fn":
                    current = names.get(number, number)
                continue
            if line.startswith("calls="):
                after_calls = True  # the next cost line is the call's inclusive cost
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if after_calls:
                    after_calls = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and current is not None:
                    cost[current] += int(parts[1])
    return cost


def crate(function):
    """The crate of a demangled Rust symbol, or `libc` and the like for the rest."""
    match = re.match(r"<?&?(?:mut |dyn )?([a-z_][a-z_0-9]*)::", function)
    if match:
        return match.group(1)
    if function.startswith(("mi_", "_mi_")):
        return "mimalloc"
    return "libc and other C"


def per_request(cost, requests, key):
    grouped = collections.Counter()
    for function, instructions in cost.items():
        grouped[key(function)] += instructions / requests
    return grouped


def table(title, regie, bare, top):
    print(f"\n{title:<60} {'regie':>8} {'bare':>8} {'extra':>8}")
    keys = sorted(set(regie) | set(bare), key=lambda k: bare[k] - regie[k])
    for key in keys[:top]:
        print(f"{key[:60]:<60} {regie[key]:8.0f} {bare[key]:8.0f} {regie[key] - bare[key]:+8.0f}")


def main():
    regie_file, regie_requests, bare_file, bare_requests = sys.argv[1:5]
    top = int(sys.argv[5]) if len(sys.argv) > 5 else 30
    regie_cost, bare_cost = own_cost(regie_file), own_cost(bare_file)
    regie_requests, bare_requests = int(regie_requests), int(bare_requests)
    by_crate = (per_request(regie_cost, regie_requests, crate),
                per_request(bare_cost, bare_requests, crate))
    by_function = (per_request(regie_cost, regie_requests, lambda f: f),
                   per_request(bare_cost, bare_requests, lambda f: f))
    regie_total, bare_total = sum(by_crate[0].values()), sum(by_crate[1].values())
    print(f"instructions per request: regie {regie_total:.0f} ({regie_requests} requests), "
          f"bare {bare_total:.0f} ({bare_requests} requests)")
    print(f"without sha2 (see loadtest/instructions.sh): regie {regie_total - by_crate[0]['sha2']:.0f}")
    table("crate", *by_crate, top)
    table("function", *by_function, top)


if __name__ == "__main__":
    main()
