#!/usr/bin/env python3
"""Fault runs against the bookstore: what was acknowledged is stored, every stored book has its
tasks, and nothing ran twice beyond at-least-once.

Three runs, each ending with the counts it checked:

1. sqlite-kill-server: clients create books over HTTP; the server (with its embedded worker) is
   killed with SIGKILL mid-run and started again on the same file; its worker drains the queue.
2. postgres-kill-worker: a server without a worker and two worker processes on PostgreSQL; one
   worker is killed with SIGKILL mid-run; the other (presence: about a second) finishes the work.
3. postgres-restart: clients create books while PostgreSQL restarts; answers `503` with
   `"outcome": "unknown"` are counted apart (the book may or may not exist).

Checks, per run: every acknowledged book (201) is stored; no book is stored twice (each request
has a title of its own); every stored book has its two tasks (reindex, email) and each finished
(`completed`, or `dead` for the emails the demo fails on purpose); how many emails were sent more
than once (at-least-once allows it; the count is printed, not failed).

Usage: scripts/fault-run.sh (builds the release binary and calls this). Standard library only;
PostgreSQL through `psql`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

BOOKSTORE = os.environ.get("BOOKSTORE_BIN", "target/release/bookstore")
PG_URL = os.environ.get("HERALD_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
CLIENTS = 8
# Every 4th email attempt fails on purpose; three attempts each: most emails end sent.
ENV = {**os.environ, "BOOKSTORE_EMAIL_FAIL_EVERY": "4", "BOOKSTORE_REINDEX_MS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, within: float = 120.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {within:.0f} s waiting for {what}")


def serve(database: str, port: int, *extra: str, schema: str | None = None) -> subprocess.Popen:
    args = [BOOKSTORE, "serve", "--port", str(port), "--database", database, *extra]
    if schema:
        args += ["--schema", schema]
    process = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(f"the server on port {port}", lambda: answers(port))
    return process


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=1) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


class Load:
    """Clients creating books with titles of their own; what each answer said."""

    def __init__(self, port: int, run: str):
        self.port, self.run = port, run
        self.lock = threading.Lock()
        self.acknowledged: dict[str, int] = {}
        self.unknown: list[str] = []
        self.failed = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(n,)) for n in range(CLIENTS)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def client(self, n: int):
        i = 0
        while not self.stop.is_set():
            title = f"{self.run} {n}-{i}"
            i += 1
            body = json.dumps({"title": title, "price_cents": 1000}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/api/books",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    book = json.load(r)
                with self.lock:
                    self.acknowledged[title] = book["id"]
            except urllib.error.HTTPError as e:
                answer = e.read().decode(errors="replace")
                with self.lock:
                    if e.code == 503 and '"unknown"' in answer:
                        self.unknown.append(title)
                    else:
                        self.failed += 1
            except (OSError, urllib.error.URLError):
                with self.lock:
                    self.failed += 1
                time.sleep(0.05)


def check(run: str, load: Load, books: list[tuple[int, str]], tasks: list[tuple[str, str, str]],
          emails: list[tuple[int]]) -> bool:
    """Print the counts; true when every check holds."""
    stored_titles = [title for _, title in books]
    stored = set(stored_titles)
    acked = set(load.acknowledged)
    missing = sorted(acked - stored)
    duplicates = len(stored_titles) - len(stored)
    ids = {book_id for book_id, _ in books}
    expected_tasks = 2 * len(books)
    by_kind: dict[str, int] = {}
    unfinished = 0
    for kind, state, book in tasks:
        by_kind[kind] = by_kind.get(kind, 0) + 1
        if state not in ("completed", "dead"):
            unfinished += 1
    # Reindexes of one book coalesce (unique = "pk"): one per book is what to expect.
    reindexed = len({book for kind, _, book in tasks if kind == "reindex_book"} & {str(i) for i in ids})
    emailed = {book for kind, _, book in tasks if kind == "email_author"} & {str(i) for i in ids}
    sent: dict[int, int] = {}
    for (book_id,) in emails:
        sent[book_id] = sent.get(book_id, 0) + 1
    sent_twice = sum(1 for n in sent.values() if n > 1)
    unknown_stored = sum(1 for t in load.unknown if t in stored)
    ok = not missing and duplicates == 0 and reindexed == len(ids) and len(emailed) == len(ids) \
        and unfinished == 0
    print(f"[{run}] acknowledged {len(acked)}, stored {len(stored)} "
          f"(acknowledged and missing: {len(missing)}), stored twice: {duplicates}, "
          f"failed requests: {load.failed}, unknown outcome: {len(load.unknown)} "
          f"(of which stored: {unknown_stored})")
    print(f"[{run}] tasks expected {expected_tasks} (a reindex and an email per stored book), "
          f"books with their reindex: {reindexed}/{len(ids)}, with their email task: "
          f"{len(emailed)}/{len(ids)}, task rows {len(tasks)} {by_kind}, unfinished {unfinished}; "
          f"emails sent: {len(emails)}, books emailed more than once: {sent_twice} "
          f"(at-least-once) -> {'OK' if ok else 'FAILED'}")
    if missing:
        print(f"[{run}] missing: {missing[:10]}")
    return ok


def sqlite_kill_server(folder: str) -> bool:
    run = "sqlite-kill-server"
    database = f"sqlite://{folder}/shop.db"
    port = free_port()
    server = serve(database, port)
    load = Load(port, run)
    load.start()
    time.sleep(3)
    server.send_signal(signal.SIGKILL)
    server.wait()
    time.sleep(0.5)
    load.finish()
    server = serve(database, port)
    path = f"{folder}/shop.db"

    def settled():
        with sqlite3.connect(path, timeout=30) as db:
            n = db.execute(PENDING).fetchone()[0]
            return n == 0

    wait_until("the restarted server's worker to finish every task", settled, within=300)
    with sqlite3.connect(path, timeout=30) as db:
        books = db.execute("SELECT id, title FROM books WHERE title LIKE ?", (f"{run} %",)).fetchall()
        tasks = tasks_of(db.execute(
            "SELECT kind, state, payload FROM herald_tasks").fetchall())
        emails = db.execute("SELECT book_id FROM emails").fetchall()
    server.send_signal(signal.SIGTERM)
    server.wait()
    return check(run, load, books, tasks, emails)


# Pending tasks: available or running in the tasks table, and every row still in the outbox
# (appended by a save, not yet moved there by a worker).
PENDING = ("SELECT (SELECT COUNT(*) FROM herald_tasks WHERE state IN ('available', 'running')) "
           "+ (SELECT COUNT(*) FROM herald_outbox)")


def tasks_of(rows) -> list[tuple[str, str, str]]:
    """(kind, state, book id) of every task row."""
    out = []
    for kind, state, payload in rows:
        instance = json.loads(payload).get("instance") or {}
        out.append((kind, state, str(instance.get("id"))))
    return out


def psql(sql: str, schema: str) -> list[list[str]]:
    result = subprocess.run(
        ["psql", PG_URL, "-qAtF", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        env={**os.environ, "PGOPTIONS": f"-c search_path={schema}"},
        check=True, capture_output=True, text=True)
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def pg_results(run: str, schema: str):
    books = [(int(i), t) for i, t in psql(f"SELECT id, title FROM books WHERE title LIKE '{run} %'", schema)]
    tasks = tasks_of(psql("SELECT kind, state, payload FROM herald_tasks", schema))
    emails = [(int(b),) for (b,) in psql("SELECT book_id FROM emails", schema)]
    return books, tasks, emails


def pg_settled(schema: str) -> bool:
    n = psql(PENDING, schema)
    return n[0][0] == "0"


def postgres_kill_worker() -> bool:
    run = "postgres-kill-worker"
    schema = f"herald_fault_worker_{os.getpid()}"
    subprocess.run([BOOKSTORE, "migrate", "--database", PG_URL, "--schema", schema],
                   env=ENV, check=True, capture_output=True)
    port = free_port()
    server = serve(PG_URL, port, "--no-worker", schema=schema)
    workers = [subprocess.Popen([BOOKSTORE, "worker", "--database", PG_URL, "--schema", schema,
                                 "--name", f"fault-{n}"],
                                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for n in range(2)]
    load = Load(port, run)
    load.start()
    time.sleep(3)
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    time.sleep(2)
    load.finish()
    wait_until("the surviving worker to finish every task", lambda: pg_settled(schema), within=300)
    books, tasks, emails = pg_results(run, schema)
    for p in [server, workers[1]]:
        p.send_signal(signal.SIGTERM)
        p.wait()
    psql(f"DROP SCHEMA {schema} CASCADE", "public")
    return check(run, load, books, tasks, emails)


def postgres_restart() -> bool:
    run = "postgres-restart"
    schema = f"herald_fault_restart_{os.getpid()}"
    subprocess.run([BOOKSTORE, "migrate", "--database", PG_URL, "--schema", schema],
                   env=ENV, check=True, capture_output=True)
    port = free_port()
    server = serve(PG_URL, port, schema=schema)
    load = Load(port, run)
    load.start()
    time.sleep(2)
    cluster = os.listdir("/etc/postgresql")[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart",
                    "-m", "fast"], check=True, capture_output=True)
    time.sleep(3)
    load.finish()
    wait_until("the worker to finish every task after the restart", lambda: pg_settled(schema),
               within=300)
    books, tasks, emails = pg_results(run, schema)
    server.send_signal(signal.SIGTERM)
    server.wait()
    psql(f"DROP SCHEMA {schema} CASCADE", "public")
    return check(run, load, books, tasks, emails)


def main() -> int:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        results.append(sqlite_kill_server(folder))
    if os.environ.get("HERALD_FAULT_POSTGRES", "1") != "0":
        results.append(postgres_kill_worker())
        results.append(postgres_restart())
    ok = all(results)
    print(f"fault runs: {sum(results)}/{len(results)} held")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
