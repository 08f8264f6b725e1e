#!/usr/bin/env python3
"""The workspace's `rust-version` is true: at least the `rust-version` of every package in the
resolved dependency graph (all features, every target), as `cargo metadata` reports it.

    python3 scripts/check-msrv.py

Prints the packages that need a newer Rust than the workspace says, and fails if there are any;
otherwise prints the highest requirement and who sets it. Needs no other toolchain than the one
that runs it.
"""

import json
import subprocess
import sys


def version_key(text):
    """`1.89` or `1.89.0` as a comparable tuple (missing parts are 0)."""
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    members = set(metadata["workspace_members"])
    resolved = {node["id"] for node in metadata["resolve"]["nodes"]}
    packages = [p for p in metadata["packages"] if p["id"] in resolved]

    declared = {
        p["name"]: p.get("rust_version") for p in packages if p["id"] in members
    }
    missing = sorted(name for name, version in declared.items() if not version)
    if missing:
        print(f"error: no rust-version in {', '.join(missing)}", file=sys.stderr)
        return 1
    workspace = min(declared.values(), key=version_key)

    needs = sorted(
        (
            (version_key(p["rust_version"]), p["rust_version"], p["name"], p["version"])
            for p in packages
            if p["id"] not in members and p.get("rust_version")
        ),
        reverse=True,
    )
    if not needs:
        print(f"ok: rust-version {workspace}; no dependency states one")
        return 0
    too_new = [n for n in needs if n[0] > version_key(workspace)]
    if too_new:
        print(
            f"error: the workspace says rust-version {workspace}, but these dependencies need more:",
            file=sys.stderr,
        )
        for _, version, name, package_version in too_new:
            print(f"  {name} {package_version}: rust-version {version}", file=sys.stderr)
        print(
            f"raise `rust-version` in Cargo.toml's [workspace.package] to {too_new[0][1]}",
            file=sys.stderr,
        )
        return 1
    top = needs[0]
    setters = [f"{n[2]} {n[3]}" for n in needs if n[0] == top[0]]
    print(
        f"ok: rust-version {workspace}; the highest a dependency needs is {top[1]} "
        f"({', '.join(setters)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
