"""`python -m bench profile [--scenario flood|SCRAM-SHA-1|PLAIN|session-PLAIN|...]`: xmppd
under the message flood (or a login storm with that mechanism, or whole client sessions with
`session-MECHANISM`), sampled by py-spy (`pip install
py-spy`); prints the functions with the most samples, by own time and with callees, and keeps
the raw (collapsed) stacks in the output directory (flamegraph.pl or speedscope read them).

The server runs on its core and the generator on the other as in `run`; py-spy samples the
server at 100 Hz with native frames (TLS and lxml are C; reading them pauses the server for
each sample, which slows it a little), or with --no-native without pausing it."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.servers import Xmppd, accounts, make_certificate


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def summarize(raw: Path, top: int = 25) -> dict:
    """From py-spy's raw (collapsed) stacks: own samples and inclusive samples per frame."""
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    by_file: collections.Counter = collections.Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        if any(mark in stack for mark in IDLE):
            idle += n
            continue
        frames = [_short(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        by_file[_file(frames)] += n
        for frame in set(frames):
            inclusive[frame] += n
    pct = lambda n: round(100 * n / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "idle_samples": idle,
        "own_by_file": [(f, pct(n)) for f, n in by_file.most_common(top)],
        "own": [(f, pct(n)) for f, n in own.most_common(top)],
        "inclusive": [(f, pct(n)) for f, n in inclusive.most_common(top)],
    }


# Stacks of a thread waiting for work (the thread pool's workers, the event loop in epoll):
# not a cost. Percentages are of the other (busy) samples.
IDLE = ("_queue_SimpleQueue_get", "select (selectors.py", "EpollSelector.select")


def _file(frames: list[str]) -> str:
    """The innermost Python file of a stack (native frames are charged to their caller)."""
    for frame in reversed(frames):
        if ".py)" in frame:
            return frame.rsplit("(", 1)[1].rstrip(")")
    return frames[-1]


def _short(frame: str) -> str:
    """'function (path/to/file.py:123)' -> 'function (file.py)'; lines vary, names do not."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})" if short else name


def profile(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="xmppd-profile-"))
    cert, key = make_certificate(tmp)
    workdir = tmp / "xmppd"
    workdir.mkdir()
    server = Xmppd(workdir, Path(args.cache), cert, key, args.server_core)
    server.provision(max(2 * args.pairs, 500))
    server.start()
    try:
        job = {
            "scenario": "flood", "host": "127.0.0.1", "port": server.port,
            "domain": "localhost", "users": accounts(2 * args.pairs), "pairs": args.pairs,
            "window": args.window, "duration": args.seconds + 4, "warmup": 3, "drain": 20,
            "cpu": args.generator_core,
        }  # fmt: skip
        if args.scenario != "flood":  # a login storm, or client sessions, with this mechanism
            session = args.scenario.startswith("session-")
            job.update(
                scenario="session" if session else "login", session=session,
                users=accounts(500), mechanism=args.scenario.removeprefix("session-"),
                concurrency=50, warmup=2,
            )  # fmt: skip
        path = tmp / "job.json"
        path.write_text(json.dumps(job))
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", str(path)], stdout=subprocess.PIPE, text=True
        )
        lines: list[str] = []
        started = threading.Event()

        def read() -> None:
            for line in worker.stdout:
                lines.append(line)
                if '"measure"' in line:
                    started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if not started.wait(180):
            raise SystemExit("the generator did not start measuring")
        time.sleep(1)
        plain_name = args.scenario.startswith(("flood", "session"))
        name = args.scenario if plain_name else f"login-{args.scenario}"
        raw = out / f"profile-{name}.raw.txt"
        common = ["--pid", str(server.proc.pid), "--duration", str(args.seconds)]
        common += ["--rate", str(args.rate)]
        # native frames need the process paused while its stack is read
        common.append("--native" if args.native else "--nonblocking")
        spy = subprocess.run(
            [py_spy(), "record", *common, "--format", "raw", "--output", str(raw)],
            capture_output=True, text=True,
        )  # fmt: skip
        if spy.returncode != 0:
            worker.kill()
            raise SystemExit(f"py-spy failed: {spy.stderr}")
        worker.wait(120)
        reader.join(5)
        flood = json.loads(lines[-1]) if lines else {}
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(raw, args.top)
    keys = ("msgs_per_s", "logins_per_s", "p50_ms", "p99_ms", "lost", "errors")
    summary["while_sampled"] = {k: flood[k] for k in keys if k in flood}
    (out / f"profile-{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{name} while sampled: {summary['while_sampled']}")
    print(f"{summary['samples']} busy samples ({summary['idle_samples']} idle left out)")
    print("own time by Python file (native callees included):")
    for frame, pct in summary["own_by_file"]:
        print(f"  {pct:5.1f}%  {frame}")
    print("own time:")
    for frame, pct in summary["own"]:
        print(f"  {pct:5.1f}%  {frame}")
    print("with callees:")
    for frame, pct in summary["inclusive"]:
        print(f"  {pct:5.1f}%  {frame}")
    print(f"raw stacks: {raw}")
