#!/usr/bin/env python3
"""schemathesis against the local API, in each store mode: `make test-api`, `make fuzz-api`.

For each store mode it starts what `make run` starts, on free loopback ports: a redis-server
(`redis`), a moto server with the table (`dynamodb`), or both (`both`, Redis in front of DynamoDB,
not in the default set); then `cargo lambda watch` with the routes of Cargo.toml and
`--disable-cors`, the functions configured as `make run` configures them (the dev key of
`make token`, the same origins and admins). It calls every route once without credentials (each
function starts, and must refuse), then each function once with the dev JWT (each must answer
200: a run cannot be all 401s for want of a credential the API takes), runs `schemathesis run
openapi.yaml` against it with the settings of tools/schemathesis.toml and the hooks of
tools/schemathesis_hooks.py, authenticated by that JWT, and stops what it started, whatever
happens (the process groups it starts are also listed in .local/api-test/pids, for the make
recipe to stop should this script be killed).

A mode fails when schemathesis reports a failure, an error or a warning the settings do not
excuse, when a function does not answer those first calls as it must, or when session-create (which
takes the JWT alone) never answered schemathesis 200.

Usage (mk/api.mk passes the settings):
    tools/api_test.py --label test-api --examples 100 --seed 20261201 --stores "redis dynamodb"
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.yaml"
SETTINGS = ROOT / "tools" / "schemathesis.toml"
HOOKS = ROOT / "tools" / "schemathesis_hooks.py"
LOCAL = ROOT / ".local" / "api-test"
PIDS = LOCAL / "pids"
TABLE = "sessions-api-test"
# The `iss` of dev tokens (shared/examples/dev_token.rs), which the local API requires.
DEV_ISSUER = "css-picker-local-dev"
# Most runs of the stateful phase that one mode makes to reach the scenarios it asks for.
STATEFUL_RUNS = 10
# A first call may wait for cargo to build a function.
FIRST_ANSWER_S = 600
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_PROFILE": "",
    "AWS_ENDPOINT_URL": "",
}


def say(line: str) -> None:
    print(line, flush=True)


class Stop(Exception):
    """SIGTERM (make's `timeout`, a killed make): stop what was started, then exit."""


def on_term(_signum, _frame):
    raise Stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Group:
    """A process started in a session (and process group) of its own; stopped with the group."""

    def __init__(self, what: str, cmd: list[str], log: Path, env: dict, cwd: Path = ROOT,
                 first: int = signal.SIGTERM):
        self.what = what
        self.first = first
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        with open(PIDS, "a") as pids:
            pids.write(f"{self.proc.pid} {what}\n")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """`first` to the process (watch stops on SIGINT), then SIGTERM and SIGKILL to its group
        and to its descendants: watch starts each function in a process group of its own."""
        pid = self.proc.pid
        family = descendants(pid)
        for sig, wait_s in ((self.first, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if not self.running(family):
                break
            try:
                if sig == self.first:
                    os.kill(pid, sig)
                else:
                    os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            if sig != self.first:
                for child in family:
                    try:
                        os.kill(child, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and self.running(family):
                time.sleep(0.1)
        self.proc.poll()

    def running(self, family: list[int]) -> bool:
        self.proc.poll()
        return group_alive(self.proc.pid) or any(alive(p) for p in family)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def processes() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgid, state) of every process."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,stat="], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 4:
            rows.append((int(fields[0]), int(fields[1]), int(fields[2]), fields[3]))
    return rows


def group_alive(pgid: int) -> bool:
    """Whether a process of the group runs (zombies, ours not yet reaped, do not count)."""
    return any(g == pgid and not st.startswith("Z") for _, _, g, st in processes())


def alive(pid: int) -> bool:
    return any(p == pid and not st.startswith("Z") for p, _, _, st in processes())


def descendants(root: int) -> list[int]:
    rows = processes()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid, _, _ in rows:
            if ppid == parent and pid not in found:
                found.append(pid)
                frontier.append(pid)
    return found


def wait_until(check, timeout_s: float, group: Group | None, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if group is not None and not group.alive():
            raise RuntimeError(f"{what} exited ({group.proc.returncode}):\n{group.tail()}")
        time.sleep(0.1)
    tail = group.tail() if group else ""
    raise RuntimeError(f"{what}: not ready within {timeout_s:.0f} s\n{tail}")


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the watch router in Cargo.toml."""
    with open(ROOT / "Cargo.toml", "rb") as f:
        router = tomllib.load(f)["workspace"]["metadata"]["lambda"]["watch"]["router"]
    return [(r["method"], path) for path, rs in router.items() for r in rs]


def call(base: str, method: str, path: str, timeout_s: float, headers: dict | None = None,
         body: object = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    headers = dict(headers or {})
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path.replace("{user_id}", "user_warmup"), data=data,
                                 headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def smoke(base: str, jwt: str, user: str) -> set[str]:
    """One success of every function, with the JWT schemathesis gets: the run cannot be all 401s
    for want of a credential the local API takes. The functions it reached."""
    reached = set()

    def ok(function: str, method: str, path: str, headers: dict, body: object = None) -> dict:
        status, text = call(base, method, path, 60, headers, body)
        if status != 200:
            raise RuntimeError(f"smoke: {method} {path} answered {status}, not 200: {text[:300]}")
        reached.add(function)
        return json.loads(text)

    bearer = {"Authorization": f"Bearer {jwt}"}
    create = "/api/session/create"
    token = ok("session-create", "POST", create, bearer, {"remember_me": True})["session_token"]
    ok("session-create", "POST", create, bearer, {})
    mine = {"X-Session-Token": token}
    ok("session-validate", "GET", "/api/session/validate", mine)
    ok("session-refresh", "POST", "/api/session/refresh", mine)
    sessions = ok("session-list", "GET", "/api/session/list", mine)["sessions"]
    others = [s["session_id"] for s in sessions if not s["current"]]
    if not others:
        raise RuntimeError(f"smoke: the list shows no second session: {sessions}")
    ok("session-revoke", "POST", "/api/session/revoke", mine, {"session_id": others[0]})
    cache = f"/api/cache/user/{urllib.parse.quote(user, safe='')}"
    ok("cache-put", "POST", cache, mine, {"smoke": True})
    ok("cache-get", "GET", cache, bearer)
    ok("session-stats", "GET", "/api/session/stats", bearer)
    ok("session-logout", "POST", "/api/session/logout", mine)
    ok("session-logout-all", "POST", "/api/session/logout-all", bearer)
    return reached


class Mode:
    def __init__(self, name: str, args, env: dict, jwt: str):
        self.name = name
        self.args = args
        self.base_env = env
        self.jwt = jwt
        self.dir = LOCAL / name
        self.groups: list[Group] = []
        self.failures: list[str] = []
        self.summary: dict = {}
        self.log_start = 0

    def start(self, what: str, cmd: list[str], env: dict, log: str,
              first: int = signal.SIGTERM) -> Group:
        group = Group(what, cmd, self.dir / log, env, first=first)
        self.groups.append(group)
        return group

    def stop_all(self) -> None:
        for group in reversed(self.groups):
            group.stop()
        self.groups.clear()

    def store_env(self) -> dict:
        env = dict(self.base_env)
        # The servers get the caller's environment, not the functions' (moto refuses the empty
        # AWS_PROFILE that the functions get).
        servers_env = dict(os.environ)
        redis_url, table, endpoint = "", "", ""
        if self.name in ("redis", "both"):
            port = free_port()
            (self.dir / "redis").mkdir()
            redis = self.start(
                "redis-server",
                ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir",
                 str(self.dir / "redis"), "--save", "", "--appendonly", "no"],
                servers_env, "redis.log")
            wait_until(lambda: redis_ping(port), 10, redis, "redis-server")
            redis_url = f"redis://127.0.0.1:{port}"
        if self.name in ("dynamodb", "both"):
            port = free_port()
            moto = self.start("moto_server", [self.args.moto_server, "-H", "127.0.0.1", "-p", str(port)],
                              servers_env, "moto.log")
            wait_until(lambda: port_open(port), 60, moto, "moto_server")
            endpoint = f"http://127.0.0.1:{port}"
            table = TABLE
            made = subprocess.run([str(self.args.examples_dir / "create_table"), endpoint, table],
                                  env={**env, **LOCAL_AWS_ENV}, capture_output=True, text=True)
            if made.returncode != 0:
                raise RuntimeError(f"create_table failed:\n{made.stdout}{made.stderr}")
        store = {"redis": "redis", "dynamodb": "dynamodb", "both": "auto"}[self.name]
        env.update({
            "SESSION_STORE": store, "REDIS_URL": redis_url, "SESSION_TABLE": table,
            "DYNAMODB_ENDPOINT": endpoint,
        })
        return env

    def run(self) -> None:
        started = time.monotonic()
        self.dir.mkdir(parents=True)
        env = self.store_env()
        port = free_port()
        watch = self.start(
            "cargo-lambda watch",
            [self.args.cargo_lambda, "lambda", "watch", "--invoke-address", "127.0.0.1",
             "--invoke-port", str(port), "--disable-cors", "--ignore-changes"],
            env, "watch.log", first=signal.SIGINT)
        wait_until(lambda: port_open(port), 60, watch, "cargo lambda watch")
        base = f"http://127.0.0.1:{port}"
        # Every function starts and answers a call without credentials (401, or 403 for a
        # preflight without Origin) in the error shape, before schemathesis begins.
        for method, path in routes():
            status, body = call(base, method, path, FIRST_ANSWER_S)
            try:
                refused = json.loads(body).get("success") is False
            except ValueError:
                refused = False
            if status not in (401, 403) or not refused:
                raise RuntimeError(f"{method} {path} without credentials answered {status}: {body[:300]}\n"
                                   f"{watch.tail()}")
        # watch starts each function in a process group of its own: listed too, for the recipe.
        with open(PIDS, "a") as pids:
            for pid, _, pgid, _ in processes():
                if pid in descendants(watch.proc.pid) and pgid != watch.proc.pid:
                    pids.write(f"{pgid} function of cargo-lambda watch\n")
        reached = smoke(base, self.jwt, self.args.user)
        functions = {f for _, path in routes() for f in self.route_functions(path)}
        if functions - reached:
            raise RuntimeError("tools/api_test.py has no smoke call for "
                               + ", ".join(sorted(functions - reached)) + ": add one")
        say(f"==> {self.name}: {len(routes())} routes answer at {base}, and each function once with "
            f"the dev JWT (store: {env['SESSION_STORE']}; log: .local/api-test/{self.name}/watch.log)")
        self.log_start = len(watch.log.read_text(errors="replace").splitlines())
        self.schemathesis(base, watch)
        self.summary["wall_s"] = time.monotonic() - started

    def schemathesis(self, base: str, watch: Group) -> None:
        """The examples, coverage and fuzzing phases in one run, then the stateful phase in runs
        of its own until it has played --stateful-examples scenarios (at most STATEFUL_RUNS runs,
        each with the next seed). schemathesis 4.32 sometimes ends a stateful phase after a dozen
        scenarios, whatever --max-examples says, and after a fuzzing phase always does."""
        env = {**self.base_env, "API_TEST_JWT": self.jwt, "SCHEMATHESIS_HOOKS": str(HOOKS)}
        totals = collections.Counter()
        evaluations = collections.Counter()
        warnings: dict[str, list] = {}
        started = time.monotonic()
        generated = ("generated", "examples,coverage,fuzzing", self.args.examples, self.args.seed)
        self.schemathesis_run(base, env, generated, totals, evaluations, warnings)
        for n in range(1, STATEFUL_RUNS + 1):
            left = self.args.stateful_examples - self.summary.get("scenarios", 0)
            if left <= 0 or (n > 1 and self.failures):
                break
            seed = str(int(self.args.seed) + n - 1) if self.args.seed else ""
            stateful = (f"stateful-{n}", "stateful", left, seed)
            self.schemathesis_run(base, env, stateful, totals, evaluations, warnings)
        self.summary.update(totals)
        self.summary.setdefault("cases", 0)
        for key in ("failed_cases", "failures", "errors"):
            self.summary.setdefault(key, 0)
        self.summary["warnings"] = warnings
        self.summary["checks"] = len(evaluations)
        self.summary["evaluations"] = sum(evaluations.values())
        self.summary["schemathesis_s"] = time.monotonic() - started
        self.read_answers(watch)

    def schemathesis_run(self, base: str, env: dict, run: tuple, totals: collections.Counter,
                         evaluations: collections.Counter, warnings: dict) -> None:
        name, phases, examples, seed = run
        reports = self.dir / "report" / name
        cmd = [self.args.schemathesis, "--config-file", str(SETTINGS), "run", str(SPEC),
               "--url", base, "--phases", phases, "--max-examples", str(examples),
               "--workers", str(self.args.workers), "--report", "json,ndjson,junit",
               "--report-dir", str(reports)]
        if seed:
            cmd += ["--seed", str(seed)]
        say(f"==> {self.name}: schemathesis run openapi.yaml --url {base} --phases {phases} "
            f"--max-examples {examples}" + (f" --seed {seed}" if seed else ""))
        log_path = self.dir / f"schemathesis-{name}.log"
        rc = self.run_schemathesis(cmd, env, log_path)
        if rc != 0:
            self.failures.append(f"schemathesis ({phases}) exited {rc} "
                                 f"(.local/api-test/{self.name}/{log_path.name})")
        report = self.read_report(reports, evaluations)
        if report is None:
            self.failures.append(f"no JSON report from schemathesis ({phases})")
            return
        totals["cases"] += report["test_cases"]["generated"]
        totals["failed_cases"] += report["test_cases"]["with_failures"]
        totals["failures"] += report["test_cases"]["unique_failures"]
        totals["errors"] += len(report["errors"])
        for kind, labels in report["warnings"].items():
            if labels:
                warnings.setdefault(kind, []).extend(labels)
        # Operations as the first run counts them (the stateful ones test those with links).
        self.summary.setdefault("operations", f"{report['operations']['tested']}/"
                                              f"{report['operations']['total']}")
        self.summary.setdefault("seed", report.get("seed"))

    def run_schemathesis(self, cmd: list[str], env: dict, log_path: Path) -> int:
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
            with open(PIDS, "a") as pids:
                pids.write(f"{proc.pid} schemathesis\n")
            try:
                for line in proc.stdout:
                    log.write(line)
                    if not self.args.quiet:
                        sys.stdout.write(line)
                return proc.wait()
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()

    def read_report(self, reports: Path, evaluations: collections.Counter) -> dict | None:
        """The JSON report of one run, and its check evaluations (from the NDJSON events) counted
        into `evaluations`; stateful scenarios into the summary."""
        found = sorted(glob.glob(str(reports / "json-*.json")))
        if not found:
            return None
        for path in glob.glob(str(reports / "ndjson-*.ndjson")):
            for line in open(path):
                event = json.loads(line)
                finished = event.get("ScenarioFinished")
                if not finished:
                    continue
                if finished.get("phase") == "stateful":
                    self.summary["scenarios"] = self.summary.get("scenarios", 0) + 1
                for results in (finished.get("recorder") or {}).get("checks", {}).values():
                    for result in results:
                        evaluations[result["name"]] += 1
        return json.loads(Path(found[-1]).read_text())

    def read_answers(self, watch: Group) -> None:
        """Every function's answers to schemathesis, from the metrics (EMF) line each one prints."""
        answers: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        lines = watch.log.read_text(errors="replace").splitlines()[self.log_start:]
        for line in lines:
            if line.startswith('{"_aws"'):
                try:
                    emf = json.loads(line)
                except ValueError:
                    continue
                answers[emf["Operation"]][emf["Status"]] += 1
        self.summary["answers"] = answers
        # The JWT reached the functions through schemathesis too (create takes nothing else).
        if not answers["session-create"][200]:
            self.failures.append("session-create never answered 200 to schemathesis: was the JWT sent?")

    @staticmethod
    def route_functions(path: str) -> list[str]:
        with open(ROOT / "Cargo.toml", "rb") as f:
            router = tomllib.load(f)["workspace"]["metadata"]["lambda"]["watch"]["router"]
        return [r["function"] for r in router[path] if r["method"] != "OPTIONS"]


def build(args) -> str:
    """The functions and the two examples (dev JWT, table), as `make run` builds them; a dev JWT."""
    say("==> cargo build --workspace --bins --example dev_token --example create_table")
    subprocess.run([args.cargo, "build", "--workspace", "--bins", "--example", "dev_token",
                    "--example", "create_table"], cwd=ROOT, check=True)
    jwt = subprocess.run([str(args.examples_dir / "dev_token"), str(args.dev_key), args.user,
                          str(args.jwt_ttl)], capture_output=True, text=True, check=True).stdout.strip()
    return jwt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="test-api")
    parser.add_argument("--examples", type=int, required=True, help="--max-examples per operation")
    parser.add_argument("--seed", default="", help="schemathesis --seed; empty: a random one")
    parser.add_argument("--stores", default="redis,dynamodb", help="comma-separated: redis, dynamodb, both")
    parser.add_argument("--stateful-examples", type=int, default=0,
                        help="scenarios of the stateful phase (default: --examples)")
    parser.add_argument("--workers", type=int, default=1,
                        help="schemathesis --workers; more than one runs into a race of CPython 3.11's ast.parse, "
                             "which hypothesis calls (SystemError: AST constructor recursion depth mismatch)")
    parser.add_argument("--user", default="user_local", help="the dev JWT's sub")
    parser.add_argument("--quiet", action="store_true", help="schemathesis output to its log only")
    args = parser.parse_args()
    args.stateful_examples = args.stateful_examples or args.examples
    env = os.environ
    args.cargo = env.get("CARGO", "cargo")
    venv_bin = Path(env.get("VENV_BIN", ROOT / ".venv" / "bin"))
    args.cargo_lambda = str(venv_bin / "cargo-lambda")
    args.schemathesis = str(venv_bin / "schemathesis")
    args.moto_server = env.get("MOTO_SERVER", str(venv_bin / "moto_server"))
    target = Path(env.get("CARGO_TARGET_DIR") or ROOT / "target")
    args.examples_dir = target / "debug" / "examples"
    args.dev_key = Path(env.get("DEV_KEY", ROOT / ".local" / "dev-jwt-private.pem"))
    dev_pub = Path(env.get("DEV_PUB", ROOT / ".local" / "dev-jwt-public.pem"))
    # Long enough for the longest fuzz run.
    args.jwt_ttl = 6 * 3600
    stores = [s for s in args.stores.replace(" ", ",").split(",") if s]
    for store in stores:
        if store not in ("redis", "dynamodb", "both"):
            parser.error(f"--stores: {store!r} is not redis, dynamodb or both")

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    modes: list[Mode] = []
    try:
        try:
            jwt = build(args)
        except subprocess.CalledProcessError as e:
            say(f"==> {args.label}: {e.cmd[0]} failed ({e.returncode}){': ' + e.stderr if e.stderr else ''}")
            return 1
        # The functions' environment, as `make run` sets it (RUN_ENV in mk/local.mk).
        function_env = {
            **env, **LOCAL_AWS_ENV,
            "PATH": f"{venv_bin}:{env.get('PATH', '')}",
            "CLERK_JWT_KEY": dev_pub.read_text().replace("\n", "\\n"),
            "CLERK_JWKS_URL": "",
            "CLERK_ISSUER": DEV_ISSUER,
            "ALLOWED_ORIGINS": env.get("ORIGINS", "http://localhost:*,http://127.0.0.1:*"),
            "ADMIN_USER_IDS": env.get("ADMINS", "user_admin"),
        }
        if LOCAL.exists():
            subprocess.run(["rm", "-rf", str(LOCAL)], check=True)
        LOCAL.mkdir(parents=True)
        for store in stores:
            mode = Mode(store, args, function_env, jwt)
            modes.append(mode)
            try:
                mode.run()
            except RuntimeError as e:
                mode.failures.append(str(e))
            finally:
                mode.stop_all()
    except (KeyboardInterrupt, Stop):
        say(f"==> {args.label}: interrupted; stopped what it started")
        return 130
    finally:
        for mode in modes:
            mode.stop_all()
        if PIDS.exists():
            PIDS.unlink()

    failed = 0
    passed = 0
    say(f"==> {args.label}: summary")
    for mode in modes:
        s = mode.summary
        mode_failed = 0
        if "cases" in s:
            say(f"    {mode.name}: {s.get('operations', '?')} operations, {s['cases']} test cases "
                f"({s.get('scenarios', 0)} stateful scenarios), "
                f"{s['checks']} checks ({s['evaluations']} evaluations), {s['failures']} failures, "
                f"{s['errors']} errors, seed {s.get('seed')}; schemathesis {s['schemathesis_s']:.0f} s, "
                f"mode {s.get('wall_s', 0):.0f} s")
            answers = s.get("answers", {})
            say("      answers: " + "; ".join(
                f"{fn} " + " ".join(f"{st}x{n}" for st, n in sorted(c.items()))
                for fn, c in sorted(answers.items())))
            if s["warnings"]:
                say(f"      warnings: {s['warnings']}")
            passed += s["cases"] - s["failed_cases"]
            mode_failed += s["failed_cases"] + s["errors"]
        for failure in mode.failures:
            say(f"    {mode.name}: FAILED: {failure}")
            if not failure.startswith("schemathesis ("):
                mode_failed += 1
        if mode.failures and mode_failed == 0:
            mode_failed = 1
        failed += mode_failed
    say(f"==> {args.label}: {len(modes)} store modes in {time.monotonic() - started:.0f} s")
    say(f"api: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
