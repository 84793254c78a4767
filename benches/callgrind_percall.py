#!/usr/bin/env python3
"""Instructions per call of the functions matching a pattern, from a callgrind
output file: total inclusive cost at the call sites divided by the calls.

Repeatable for the same binary and input whatever else the machine does
(callgrind counts instructions, not time), so it is the figure to compare
before and after a change on a noisy machine.

Usage: callgrind_percall.py CALLGRIND_OUT REGEX [REGEX...]
"""
import re
import sys


def per_call(lines, pattern):
    names, calls, cost, callee = {}, 0, 0, None
    for i, line in enumerate(lines):
        m = re.match(r"^(cfn|fn)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name
            if kind == "cfn":
                callee = names.get(ident, "")
            continue
        m = re.match(r"^calls=(\d+)", line)
        if m and callee and re.search(pattern, callee):
            calls += int(m.group(1))
            cost += int(lines[i + 1].split()[1])
    return calls, cost


def main():
    lines = open(sys.argv[1]).read().split("\n")
    for pattern in sys.argv[2:]:
        calls, cost = per_call(lines, pattern)
        each = cost // calls if calls else 0
        print(f"{pattern}\t{calls} calls\t{each} instructions per call")


if __name__ == "__main__":
    main()
