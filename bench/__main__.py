"""`python -m bench run --against xmppd,prosody`: the same scenarios against each server in one
run, the server pinned to one core and the generator processes to the other; writes
bench/results/latest.json and latest.md after every scenario, so a partial run still has a
table. `python -m bench table FILE.json` prints the Markdown table of a result file."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import markdown
from bench.servers import BENCH, ROOT, SERVERS, accounts, make_certificate

SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time used by everything on the machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def others(entry: dict, busy_pct: float) -> None:
    """CPU used on the machine by neither the server nor the generator (other people's
    processes on a shared box): a run with much of it is a noisy run."""
    server, gen = entry.get("server_cpu_pct"), entry.get("generator_cpu_pct")
    if server is not None and gen is not None:
        entry["others_cpu_pct"] = round(max(0.0, busy_pct - server - gen), 1)


IDLE_PER_WORKER = 4000


def machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        mem_gib = round(int(mem) / 1024 / 1024, 1)
    except (OSError, IndexError, ValueError):
        mem_gib = None
    import resource

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.result = {
            "command": "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "settings": {
                "server_core": args.server_core,
                "generator_core": args.generator_core,
                "login_concurrency": args.login_concurrency,
                "login_accounts": args.login_accounts,
                "duration_s": args.duration,
                "pairs": args.pairs,
                "window": args.window,
                "idle": args.idle,
                "roster": [args.roster_users, args.roster_contacts, args.roster_rounds],
                "big_roster": args.big_roster,
            },
            "servers": {},
            "results": [],
        }
        self.tmp = Path(tempfile.mkdtemp(prefix="xmppd-bench-"))
        self.cache = Path(args.cache)

    def save(self) -> None:
        self.result["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        (self.out / "latest.json").write_text(json.dumps(self.result, indent=2) + "\n")
        (self.out / "latest.md").write_text(markdown(self.result) + "\n")

    def log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", file=sys.stderr, flush=True)

    def add(self, server: str, entry: dict) -> None:
        entry = {"server": server, **entry}
        self.result["results"].append(entry)
        self.save()
        self.log(f"{server}: {json.dumps(entry)}")

    # --- generator processes -----------------------------------------------------------------

    def worker(self, job: dict) -> subprocess.Popen:
        job = {**job, "cpu": self.args.generator_core}
        path = self.tmp / f"job-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(job))
        return subprocess.Popen(
            [sys.executable, "-m", "bench.worker", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def measured(self, server, job: dict, timeout: float = 600) -> dict:
        """Run one worker to its end, reading the server's CPU time (and the machine's) at the
        moments the worker says its measured window starts and ends."""
        proc = self.worker(job)
        marks: dict[str, tuple[float, float, float]] = {}
        lines = []
        deadline = time.monotonic() + timeout
        try:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith('{"event"'):
                    event = json.loads(line)["event"]
                    marks[event] = (time.monotonic(), server.cpu_seconds(), busy_seconds())
                if time.monotonic() > deadline:
                    raise RuntimeError("generator timed out")
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"generator failed ({proc.returncode}): {''.join(lines)[-2000:]}")
        result = json.loads(lines[-1])
        if "measure" in marks and "measured" in marks:
            (t0, c0, b0), (t1, c1, b1) = marks["measure"], marks["measured"]
            result["server_cpu_pct"] = round(100 * (c1 - c0) / (t1 - t0), 1)
            others(result, 100 * (b1 - b0) / (t1 - t0))
        return result

    # --- scenarios ---------------------------------------------------------------------------

    def login(self, server, mechanism: str, session: bool = False) -> None:
        """The login storm, or with `session` whole client sessions (roster, presence, logout)."""
        users = accounts(self.args.login_accounts)
        job = {
            "scenario": "session" if session else "login", "session": session,
            "host": "127.0.0.1", "port": server.port,
            "domain": "localhost", "users": users, "mechanism": mechanism,
            "concurrency": self.args.login_concurrency, "duration": self.args.duration,
            "warmup": 2, "sources": SOURCES[:4],
        }  # fmt: skip
        self.add(server.name, self.measured(server, job))

    def flood(self, server) -> None:
        users = accounts(2 * self.args.pairs)
        job = {
            "scenario": "flood", "host": "127.0.0.1", "port": server.port,
            "domain": "localhost", "users": users, "pairs": self.args.pairs,
            "window": self.args.window, "duration": self.args.duration, "warmup": 3,
            "drain": 20, "sources": SOURCES[4:6],
        }  # fmt: skip
        result = self.measured(server, job)
        if result.get("lost") or result.get("connections_closed"):
            result["server_exit_code"] = server.proc.poll()  # None: it is still running
            self.log(f"{server.name}: connections lost; its log ends with:\n{server.log_tail()}")
        self.add(server.name, result)

    def roster(self, server) -> None:
        """Presence fan-out over mutual rosters, then logins of a user with a big roster; on a
        fresh server whose rosters were written just before it started."""
        from bench.rosters import names, ring, with_big

        a = self.args
        n, r, size = a.roster_users, a.roster_contacts, a.big_roster
        big = max(n, size)
        everyone = accounts(big + 1)
        server.write_rosters(names(with_big(ring(n, r), big, size)))
        server.start()
        try:
            job = {
                "scenario": "roster", "host": "127.0.0.1", "port": server.port,
                "domain": "localhost", "users": everyone[:n], "n": n, "contacts": r,
                "rounds": a.roster_rounds, "duration": 0, "concurrency": 50,
                "big": everyone[big], "big_size": size, "big_online": min(n, size),
                "big_logins": 5, "sources": SOURCES[6:8],
            }  # fmt: skip
            self.add(server.name, self.measured(server, job, timeout=1800))
        finally:
            server.stop()

    def idle(self, server) -> None:
        levels = sorted(self.args.idle)
        total = levels[-1]
        users = accounts(total)
        n_workers = max(1, math.ceil(total / IDLE_PER_WORKER))
        rss0 = server.rss_kib()
        workers = []
        for w in range(n_workers):
            job = {
                "scenario": "idle", "host": "127.0.0.1", "port": server.port,
                "domain": "localhost", "users": users[w::n_workers],
                "sources": [SOURCES[w % len(SOURCES)]], "concurrency": 25,
            }  # fmt: skip
            workers.append(self.worker(job))
        try:
            for level in levels:
                base, extra = divmod(level, n_workers)
                replies = []
                t0, cpu0, busy0 = time.monotonic(), server.cpu_seconds(), busy_seconds()
                for w, proc in enumerate(workers):
                    target = base + (1 if w < extra else 0)
                    proc.stdin.write(json.dumps({"target": target}) + "\n")
                    proc.stdin.flush()
                for proc in workers:
                    line = proc.stdout.readline()
                    if not line:
                        raise RuntimeError("an idle generator ended early")
                    replies.append(json.loads(line))
                ramp = time.monotonic() - t0
                server_cpu = server.cpu_seconds() - cpu0
                busy = busy_seconds() - busy0
                time.sleep(5)  # let the server settle before its RSS is read
                rss = server.rss_kib()
                connected = sum(r["connected"] for r in replies)
                gen_cpu = sum(r["generator_cpu_s"] for r in replies)
                self.add(
                    server.name,
                    {
                        "scenario": "idle",
                        "target": level,
                        "connected": connected,
                        "errors": sum(r["errors"] for r in replies),
                        "error_sample": [e for r in replies for e in r["error_sample"]][:3],
                        "rss_kib": rss,
                        "rss_before_kib": rss0,
                        "kib_per_connection": (
                            round((rss - rss0) / connected, 1) if connected else None
                        ),
                        "ramp_seconds": round(ramp, 1),
                        "ramp_logins_per_s": round(connected / ramp, 1) if ramp else None,
                        "server_cpu_pct": round(100 * server_cpu / ramp, 1) if ramp else None,
                        "generator_cpu_pct": round(100 * gen_cpu / ramp, 1) if ramp else None,
                        "generator_processes": n_workers,
                        "others_cpu_pct": (
                            round(max(0.0, 100 * (busy - server_cpu - gen_cpu) / ramp), 1)
                            if ramp
                            else None
                        ),
                    },
                )
                if connected < level * 0.9:
                    self.log(f"{server.name}: only {connected} of {level} connected; stopping")
                    break
        finally:
            for proc in workers:
                try:
                    proc.stdin.write(json.dumps({"stop": True}) + "\n")
                    proc.stdin.flush()
                except OSError:
                    pass
            for proc in workers:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()

    # --- the run -----------------------------------------------------------------------------

    def run(self) -> None:
        args = self.args
        cert, key = make_certificate(self.tmp)
        count = max([args.login_accounts, 2 * args.pairs, *args.idle])
        if "roster" in args.scenarios:
            count = max(count, max(args.roster_users, args.big_roster) + 1)
        self.save()
        for name in args.against:
            workdir = self.tmp / name
            workdir.mkdir()
            server = SERVERS[name](workdir, self.cache, cert, key, args.server_core)
            self.log(f"{name}: provisioning {count} accounts")
            took = server.provision(count)
            self.result["servers"][name] = {"version": server.version(), "provision_s": took}
            self.save()
            try:
                # Each measurement on a fresh process: a server's state after one scenario
                # must not weigh on the next (Prosody floods at under half its speed after a
                # login storm), and every server gets the same clean start.
                if "login" in args.scenarios:
                    for mechanism in args.mechanisms:
                        self.log(f"{name}: login storm, {mechanism}")
                        self._fresh(server, lambda s=server, m=mechanism: self.login(s, m))
                if "session" in args.scenarios:
                    for mechanism in args.mechanisms:
                        self.log(f"{name}: client sessions, {mechanism}")
                        self._fresh(server, lambda s=server, m=mechanism: self.login(s, m, True))
                if "flood" in args.scenarios:
                    self.log(f"{name}: message flood")
                    self._fresh(server, lambda s=server: self.flood(s))
                if "idle" in args.scenarios:  # fresh, too: its RSS is the idle connections'
                    self.log(f"{name}: idle connections {args.idle}")
                    self._fresh(server, lambda s=server: self.idle(s))
                if "roster" in args.scenarios:  # last: the other scenarios want no rosters
                    size = f"{args.roster_users} x {args.roster_contacts}"
                    self.log(f"{name}: roster/presence, {size}")
                    self._guard(name, lambda s=server: self.roster(s))
            except Exception as exc:  # noqa: BLE001 - a partial run still writes its table
                self.add(name, {"scenario": "error", "error": repr(exc)[:500]})
                self.log(server.log_tail())
        self.save()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.log(f"servers' logs and data kept in {self.tmp}")
        print(markdown(self.result))

    def _fresh(self, server, fn) -> None:
        server.start()
        try:
            self._guard(server.name, fn)
        finally:
            server.stop()

    def _guard(self, name: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - keep going with the next scenario
            self.add(name, {"scenario": "error", "error": repr(exc)[:500]})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the scenarios against the servers")
    csv = lambda text: [s.strip() for s in text.split(",") if s.strip()]  # noqa: E731
    ints = lambda text: [int(s) for s in csv(text)]  # noqa: E731
    run.add_argument("--against", type=csv, default=["xmppd", "prosody"])
    run.add_argument(
        "--scenarios", type=csv, default=["login", "session", "flood", "idle", "roster"]
    )
    run.add_argument("--mechanisms", type=csv, default=["SCRAM-SHA-1", "PLAIN"])
    run.add_argument("--idle", type=ints, default=[1000, 10000, 19000])
    run.add_argument("--duration", type=float, default=10.0)
    run.add_argument("--pairs", type=int, default=50)
    run.add_argument("--window", type=int, default=50)
    run.add_argument("--roster-users", type=int, default=1000)
    run.add_argument("--roster-contacts", type=int, default=100, help="even, below the users")
    run.add_argument("--roster-rounds", type=int, default=5, help="measured presence rounds")
    run.add_argument("--big-roster", type=int, default=500, help="contacts of the big roster")
    run.add_argument("--login-concurrency", type=int, default=50)
    run.add_argument("--login-accounts", type=int, default=500)
    run.add_argument("--server-core", type=int, default=0)
    run.add_argument("--generator-core", type=int, default=1)
    run.add_argument("--out", default=str(BENCH / "results"))
    run.add_argument(
        "--cache",
        default=str(Path(tempfile.gettempdir()) / "xmppd-bench-cache"),
        help="provisioned accounts are kept here between runs",
    )
    run.add_argument("--keep", action="store_true", help="keep the servers' data and logs")
    prof = sub.add_parser("profile", help="py-spy samples of xmppd under the message flood")
    prof.add_argument(
        "--scenario", default="flood", help="flood, SCRAM-SHA-1, PLAIN, session-PLAIN, ..."
    )
    prof.add_argument("--seconds", type=int, default=20)
    prof.add_argument("--pairs", type=int, default=50)
    prof.add_argument("--window", type=int, default=50)
    prof.add_argument("--top", type=int, default=25)
    prof.add_argument("--rate", type=int, default=100, help="samples a second")
    prof.add_argument("--native", action=argparse.BooleanOptionalAction, default=True)
    prof.add_argument("--server-core", type=int, default=0)
    prof.add_argument("--generator-core", type=int, default=1)
    prof.add_argument("--out", default=str(BENCH / "results"))
    prof.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "xmppd-bench-cache"))
    clustered = sub.add_parser("cluster", help="what clustering costs (bench/cluster.py)")
    clustered.add_argument("--duration", type=float, default=10.0)
    clustered.add_argument("--pairs", type=int, default=50)
    clustered.add_argument("--window", type=int, default=50)
    clustered.add_argument("--login-concurrency", type=int, default=50)
    clustered.add_argument("--login-accounts", type=int, default=500)
    clustered.add_argument("--server-core", type=int, default=0)
    clustered.add_argument("--generator-core", type=int, default=1)
    clustered.add_argument("--out", default=str(BENCH / "results" / "cluster"))
    clustered.set_defaults(idle=[], roster_users=0, roster_contacts=0, roster_rounds=0,
                           big_roster=0, cache=str(Path(tempfile.gettempdir())))  # fmt: skip
    table = sub.add_parser("table", help="print the Markdown table of a result file")
    table.add_argument("file")
    medians = sub.add_parser(
        "medians", help="one table of several runs: medians and ranges per server and figure"
    )
    medians.add_argument("files", nargs="+", help="the runs' latest.json files")
    args = parser.parse_args(argv)
    if args.command == "table":
        print(markdown(json.loads(Path(args.file).read_text())))
        return
    if args.command == "cluster":
        from bench.cluster import run as run_cluster

        run_cluster(args)
        return
    if args.command == "medians":
        from bench.medians import markdown as medians_table

        print(medians_table([Path(f) for f in args.files]), end="")
        return
    if args.command == "profile":
        from bench.profile import profile

        profile(args)
        return
    for name in args.against:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {args.generator_core})
        except OSError:
            pass
    Run(args).run()


if __name__ == "__main__":
    main()
