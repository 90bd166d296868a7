"""SQLite in WAL mode from two processes at once (tests/python-file-apps.sh):
a writer (this process) and a reader (this file again, as a child started
with subprocess), in the directory given. Run natively and in a sandbox;
the output must be the same. What it exercises: fcntl record locks between
processes (SQLite's locking protocol), a MAP_SHARED mapping of the -shm file
made by each process on its own, the -wal file written by one and read by
the other, readers not blocked by a writer (WAL), "database is locked" for
a second writer, a checkpoint.

usage: sqlite_wal.py DIR          (the writer; prints the results)
       sqlite_wal.py DIR reader   (the reader: commands on stdin)
"""
import os
import sqlite3
import subprocess
import sys

N = 300


def reader(db):
    con = sqlite3.connect(db, isolation_level=None, timeout=0)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "count":
            print(con.execute("select count(*) from t").fetchone()[0], flush=True)
        elif cmd[0] == "write":  # a second writer while the first holds the lock
            try:
                con.execute("insert into t values (-1)")
                print("wrote", flush=True)
            except sqlite3.OperationalError as e:
                print("error:", e, flush=True)
        elif cmd[0] == "follow":  # read snapshots until all N rows are seen
            bad = snaps = 0
            while True:
                con.execute("begin")
                n, s = con.execute("select count(*), coalesce(sum(i), 0) from t").fetchone()
                m = con.execute("select coalesce(max(i), 0) from t").fetchone()[0]
                con.execute("commit")
                snaps += 1
                if s != n * (n + 1) // 2 or m != n:
                    bad += 1
                if n == N:
                    break
            print("snapshots consistent:", bad == 0, "saw the end:", n == N, flush=True)
        elif cmd[0] == "quit":
            con.close()
            return


def main():
    d = sys.argv[1]
    db = os.path.join(d, "wal.db")
    if len(sys.argv) > 2:
        return reader(db)
    con = sqlite3.connect(db, isolation_level=None, timeout=0)
    print("journal_mode:", con.execute("pragma journal_mode=wal").fetchone()[0])
    con.execute("create table t (i integer)")
    print("files:", sorted(f for f in os.listdir(d) if f.startswith("wal.db")))
    r = subprocess.Popen([sys.executable, __file__, d, "reader"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)

    def ask(cmd):
        r.stdin.write(cmd + "\n")
        r.stdin.flush()
        return r.stdout.readline().strip()

    con.execute("begin immediate")
    for i in range(1, 11):
        con.execute("insert into t values (?)", (i,))
    print("reader during an open write transaction:", ask("count"))
    print("a second writer meanwhile:", ask("write"))
    con.execute("commit")
    print("reader after the commit:", ask("count"))
    r.stdin.write("follow\n")
    r.stdin.flush()
    for i in range(11, N + 1):
        con.execute("insert into t values (?)", (i,))
    print("reader following the writer:", r.stdout.readline().strip())
    print("wal file has data:", os.path.getsize(db + "-wal") > 0)
    print("checkpoint (busy, log, checkpointed):", con.execute("pragma wal_checkpoint(truncate)").fetchone())
    print("wal file after a truncating checkpoint:", os.path.getsize(db + "-wal"))
    print("reader after the checkpoint:", ask("count"))
    ask("quit")
    print("reader exit:", r.wait())
    print("rows, sum:", con.execute("select count(*), sum(i) from t").fetchone())
    print("integrity:", con.execute("pragma integrity_check").fetchone()[0])
    con.close()
    # A new connection after the last one closed: the WAL is gone.
    con = sqlite3.connect(db)
    print("reopened:", con.execute("select count(*) from t").fetchone()[0], "rows")
    con.close()
    print("files at the end:", sorted(f for f in os.listdir(d) if f.startswith("wal.db")))


main()
