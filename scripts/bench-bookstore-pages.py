#!/usr/bin/env python3
"""The bookstore's pages with a large shop: how long `GET /` and the list API take with N books.

    cargo build --release -p bookstore
    python3 scripts/bench-bookstore-pages.py [--books 1000000] [--requests 200]

Migrates a fresh SQLite file with the bookstore's own `migrate`, fills it with N books (two
authors, prices spread over 1..50.00) through Python's sqlite3 in one transaction, starts the
release `bookstore serve --no-worker` on it, and times each URL (a new loopback connection per
request, as a browser's first visit), printing median, p90 and max in milliseconds and the size of
the answer. Nothing is written while the timings run.
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary() -> str:
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    path = os.path.join(target, "release", "bookstore")
    if not os.path.exists(path):
        sys.exit(f"error: {path} is missing: run `cargo build --release -p bookstore` first")
    return path


def fill(db_path: str, books: int) -> None:
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("INSERT INTO authors (id, name, email) VALUES (1, 'Ursula K. Le Guin', 'u@example.invalid')")
        conn.execute("INSERT INTO authors (id, name, email) VALUES (2, 'Octavia E. Butler', 'o@example.invalid')")
        conn.executemany(
            "INSERT INTO books (author_id, title, slug, price_cents) VALUES (?, ?, ?, ?)",
            ((1 + i % 2, f"Book {i}", f"book-{i}", 100 + (i * 7919) % 4900) for i in range(books)),
        )
    conn.close()


def get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url) as response:
        body = response.read()
        if response.status != 200:
            sys.exit(f"error: GET {url} answered {response.status}")
    return (time.perf_counter() - started) * 1e3, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--port", type=int, default=18089)
    args = parser.parse_args()

    exe = binary()
    work = tempfile.mkdtemp(prefix="bookstore-pages-")
    db_path = os.path.join(work, "bookstore.db")
    url = f"sqlite://{db_path}"
    try:
        subprocess.run([exe, "migrate", "--database", url], check=True, capture_output=True)
        started = time.perf_counter()
        fill(db_path, args.books)
        print(f"{args.books} books written in {time.perf_counter() - started:.1f} s")
        env = dict(os.environ, BOOKSTORE_SAMPLE_DATA="0")
        server = subprocess.Popen(
            [exe, "serve", "--database", url, "--port", str(args.port), "--no-worker"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            line = server.stdout.readline()
            if "serving" not in line:
                sys.exit(f"error: the bookstore did not start: {line}")
            base = f"http://127.0.0.1:{args.port}"
            deep = args.books // 2
            urls = [
                "/",
                f"/?after={deep}",
                "/?author_id=2",
                "/?min_price_cents=1000&max_price_cents=1100",
                "/api/books",
                f"/api/books?after={deep}",
                "/api/books?author_id=1&min_price_cents=4000",
            ]
            print(f"{'url':<48} {'median ms':>9} {'p90 ms':>8} {'max ms':>8} {'bytes':>8}")
            for path in urls:
                get(base + path)  # warm: the first read of the pages it touches
                times, size = [], 0
                for _ in range(args.requests):
                    ms, size = get(base + path)
                    times.append(ms)
                times.sort()
                p90 = times[int(len(times) * 0.9) - 1]
                print(f"{path:<48} {statistics.median(times):>9.2f} {p90:>8.2f} {times[-1]:>8.2f} {size:>8}")
        finally:
            server.terminate()
            server.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
