#!/usr/bin/env python3
"""Checks that the generated Swift bindings still declare what the Swift wrapper calls.

No Swift compiler runs on the Linux CI machine, so this is the guard against the FFI crate and
Sources/Pulselink/PulselinkClient.swift drifting apart. Usage: check_api.py <Pulselink.swift>
"""
import pathlib
import re
import sys


def normalize(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)  # doc comments, also inside parameter lists
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r"\s+", " ", text)


def main() -> int:
    generated = normalize(pathlib.Path(sys.argv[1]).read_text())
    expected = pathlib.Path(__file__).with_name("expected-api.txt").read_text().splitlines()
    missing = [line for line in expected if line and not line.startswith("#") and normalize(line).strip() not in generated]
    for line in missing:
        print(f"missing from the generated Swift: {line}", file=sys.stderr)
    used = len([line for line in expected if line and not line.startswith("#")])
    print(f"Swift API check: {used - len(missing)} of {used} declarations the wrapper uses are generated")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
