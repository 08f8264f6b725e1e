#!/usr/bin/env python3
"""The seed's "Performance Comparison" patterns on Django, for herald-bench's table.

herald-bench runs this with ``--django`` in a venv that has Django 5.2.19; it can also be run by
hand (``python seed.py --dir /tmp/x``). Like ``shared/anchors/django/bench.py``, everything is
self-contained: settings are configured in-process, ``Book`` is declared here with
``app_label = "bench"`` and its tables are created with the schema editor.

Each pattern has a database alias of its own (a fresh SQLite file in ``--dir``, WAL, synchronous
NORMAL, a busy timeout so that concurrent writers wait instead of failing) and only its own
receiver connected. ``--clients`` threads, each with its own connection (closed when the thread
ends), create books in a loop for ``--seconds``, each save timed. The heavy work is
``time.sleep`` (the seed's) or a busy loop of ``--heavy-ms``. The background pattern is the
seed's own: its ``post_save`` receiver starts ``Thread(target=background_task)``; after the
clients stop, the started threads are joined until ``--drain-deadline``.

With ``--isolation`` it runs herald-bench's isolation table instead: ``--clients`` threads save
plain books beside one more thread whose saves hit a receiver that sleeps ``--heavy-ms`` (a
``pre_save``, a ``post_save``, or a ``transaction.on_commit`` callback; no async case, since
``Model.save`` is synchronous), plus a case with no slow receiver; it reports the plain clients'
latencies (``{"isolation": [...]}``).

Prints one JSON document on stdout (the field names herald-bench reads); progress on stderr, one
line as each pattern starts (``pattern NAME``) and ends (``done NAME``). A save that fails makes
the script fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import threading
import time

TITLE = "Hello Django Signals"
BODY = "A short body of text for the benchmark row."
PATTERNS = [
    "heavy_pre_save_blocking",
    "light_pre_save",
    "heavy_post_save_background",
    "heavy_post_save_blocking",
]
ISOLATION_CASES = ["none", "sync_pre_save", "sync_post_save", "on_commit"]
# Seconds a connection waits for another's write lock (sqlite3.connect's timeout).
BUSY_TIMEOUT_S = 60


def setup_django(folder: str):
    """Configure one database alias per pattern, start Django, define Book."""
    from django.conf import settings

    settings.configure(
        DEBUG=False,  # DEBUG=True would also record every query
        INSTALLED_APPS=[],
        USE_TZ=True,
        DATABASES={
            pattern: {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(folder, f"seed_{pattern}.sqlite3"),
                "OPTIONS": {
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
                    "timeout": BUSY_TIMEOUT_S,
                },
            }
            for pattern in ["default", *PATTERNS, *(f"isolation_{c}" for c in ISOLATION_CASES)]
        },
    )

    import django

    django.setup()

    from django.db import models

    class Book(models.Model):
        title = models.CharField(max_length=200)
        slug = models.SlugField(blank=True)
        body = models.TextField()
        price = models.IntegerField()

        class Meta:
            app_label = "bench"

    return Book


def make_heavy(kind: str, seconds: float):
    """The heavy work: sleep, or keep the interpreter busy, for `seconds`."""
    if kind == "sleep":
        return lambda: time.sleep(seconds)

    def spin() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    return spin


class Work:
    """Runs of the pattern's work that finished, and the threads started for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = 0
        self.threads: list[threading.Thread] = []

    def finished(self) -> None:
        with self.lock:
            self.done += 1

    def started(self, thread: threading.Thread) -> None:
        with self.lock:
            self.threads.append(thread)


def receivers(pattern: str, heavy, work: Work):
    """The (signal, receiver) pairs of `pattern`."""
    from django.db.models.signals import post_save, pre_save
    from django.utils.text import slugify

    def heavy_pre_save(sender, instance, **kwargs):
        heavy()
        instance.slug = slugify(instance.title)
        work.finished()

    def light_pre_save(sender, instance, **kwargs):
        if not instance.slug:
            instance.slug = slugify(instance.title)
        work.finished()

    def heavy_post_save_background(sender, instance, **kwargs):
        def background_task():
            heavy()
            work.finished()

        thread = threading.Thread(target=background_task)
        thread.start()
        work.started(thread)

    def heavy_post_save(sender, instance, **kwargs):
        heavy()
        work.finished()

    return {
        "heavy_pre_save_blocking": [(pre_save, heavy_pre_save)],
        "light_pre_save": [(pre_save, light_pre_save)],
        "heavy_post_save_background": [(post_save, heavy_post_save_background)],
        "heavy_post_save_blocking": [(post_save, heavy_post_save)],
    }[pattern]


def client(Book, alias: str, number: int, until: float, latencies: list, errors: list) -> None:
    """Create books until `until`, timing each; then close this thread's connection."""
    from django.db import connections

    mine = []
    try:
        i = 0
        while time.perf_counter() < until:
            start = time.perf_counter_ns()
            Book.objects.using(alias).create(title=TITLE, body=BODY, price=number * 1_000_000 + i)
            mine.append((time.perf_counter_ns() - start) / 1e6)
            i += 1
    except Exception as error:  # reported by the caller, which fails the script
        errors.append(f"{type(error).__name__}: {error}")
    finally:
        connections[alias].close()
        latencies.extend(mine)


def percentile(ordered: list, q: float) -> float:
    """Nearest rank, as herald-bench computes it."""
    if not ordered:
        return 0.0
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def measure(Book, pattern: str, args) -> dict:
    from django.db import connections

    alias = pattern
    with connections[alias].schema_editor() as editor:
        editor.create_model(Book)
    connections[alias].close()

    work = Work()
    pairs = receivers(pattern, make_heavy(args.heavy_work, args.heavy_ms / 1e3), work)
    for signal, receiver in pairs:
        signal.connect(receiver, sender=Book, weak=False)
    latencies: list[float] = []
    errors: list[str] = []
    drain_s = None
    try:
        started = time.perf_counter()
        until = started + args.seconds
        clients = [
            threading.Thread(target=client, args=(Book, alias, n, until, latencies, errors))
            for n in range(args.clients)
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.perf_counter() - started
        if work.threads:
            drain_started = time.perf_counter()
            deadline = drain_started + args.drain_deadline
            for thread in list(work.threads):
                thread.join(max(0.0, deadline - time.perf_counter()))
            drain_s = time.perf_counter() - drain_started
    finally:
        for signal, receiver in pairs:
            signal.disconnect(receiver, sender=Book)
    if errors:
        raise SystemExit(f"{pattern}: {len(errors)} client(s) failed; the first: {errors[0]}")

    latencies.sort()
    saves = len(latencies)
    return {
        "pattern": pattern,
        "saves": saves,
        "elapsed_s": elapsed,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "saves_per_second": saves / elapsed,
        "work_completed": work.done,
        "completed_pct": 100.0 * work.done / max(saves, 1),
        "drain_s": drain_s,
    }


def isolation_case(Book, case: str, args) -> dict:
    """Plain clients beside one slow client; the plain clients' figures."""
    from django.db import connections, transaction
    from django.db.models.signals import post_save, pre_save

    alias = f"isolation_{case}"
    with connections[alias].schema_editor() as editor:
        editor.create_model(Book)
    connections[alias].close()
    slow = args.heavy_ms / 1e3

    def slow_pre_save(sender, instance, **kwargs):
        if instance.title.startswith("slow"):
            time.sleep(slow)

    def slow_post_save(sender, instance, **kwargs):
        if instance.title.startswith("slow"):
            time.sleep(slow)

    def slow_on_commit(sender, instance, **kwargs):
        if instance.title.startswith("slow"):
            transaction.on_commit(lambda: time.sleep(slow), using=alias)

    pairs = {
        "none": [],
        "sync_pre_save": [(pre_save, slow_pre_save)],
        "sync_post_save": [(post_save, slow_post_save)],
        "on_commit": [(post_save, slow_on_commit)],
    }[case]
    for signal, receiver in pairs:
        signal.connect(receiver, sender=Book, weak=False)
    results: dict[int, list] = {n: [] for n in range(args.clients + 1)}
    errors: list[str] = []

    def run(number: int, until: float) -> None:
        title = "slow" if number == args.clients else "plain"
        mine = results[number]
        try:
            i = 0
            while time.perf_counter() < until:
                start = time.perf_counter_ns()
                Book.objects.using(alias).create(
                    title=f"{title} {number}", body=BODY, price=number * 1_000_000 + i
                )
                mine.append((time.perf_counter_ns() - start) / 1e6)
                i += 1
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            connections[alias].close()

    try:
        started = time.perf_counter()
        until = started + args.seconds
        threads = [threading.Thread(target=run, args=(n, until)) for n in range(args.clients + 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        for signal, receiver in pairs:
            signal.disconnect(receiver, sender=Book)
    if errors:
        raise SystemExit(f"isolation {case}: {len(errors)} client(s) failed; the first: {errors[0]}")
    plain = sorted(x for n in range(args.clients) for x in results[n])
    slow_latencies = sorted(results[args.clients])
    return {
        "case": case,
        "saves": len(plain),
        "p50_ms": percentile(plain, 0.50),
        "p99_ms": percentile(plain, 0.99),
        "saves_per_second": len(plain) / elapsed,
        "slow_saves": len(slow_latencies),
        "slow_p50_ms": percentile(slow_latencies, 0.50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--heavy-ms", type=float, default=20.0)
    parser.add_argument("--heavy-work", choices=["sleep", "spin"], default="sleep")
    parser.add_argument("--drain-deadline", type=float, default=120.0)
    parser.add_argument("--dir", required=True, help="a folder for the SQLite files")
    parser.add_argument("--isolation", action="store_true", help="run the isolation table")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.heavy_ms <= 0:
        parser.error("--clients, --seconds and --heavy-ms must be positive")

    Book = setup_django(args.dir)

    import django

    if args.isolation:
        cases = []
        for case in ISOLATION_CASES:
            print(f"case {case}", file=sys.stderr, flush=True)
            cases.append(isolation_case(Book, case, args))
        json.dump({"django": django.get_version(), "isolation": cases}, sys.stdout)
        print()
        return

    results = []
    for pattern in PATTERNS:
        print(f"pattern {pattern}", file=sys.stderr, flush=True)
        results.append(measure(Book, pattern, args))
        print(f"done {pattern}", file=sys.stderr, flush=True)
    json.dump(
        {
            "django": django.get_version(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "patterns": results,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
