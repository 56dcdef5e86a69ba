"""Fixtures: a real asflowd on a temporary unix socket, with its state,
HOME and XDG directories under pytest's tmp_path; every process a test
starts is stopped by its pid. ASFLOW_BUILD names the build tree (ctest
sets it; default: build/ beside python/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("ASFLOW_BUILD", REPO / "build"))
ASFLOWD = BUILD / "server" / "asflowd"
ASFLOWCTL = BUILD / "client" / "asflowctl"
PYTHONPATH = f"{REPO / 'python'}:{BUILD / 'python'}"


def wait_for(condition, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL: by pid, only what the test started."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class Daemon:
    root: Path
    socket: Path
    state: Path
    log: Path
    env: dict[str, str]
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def server(self) -> str:
        return f"unix:{self.socket}"

    def start(self) -> None:
        self.starts += 1
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(ASFLOWD), "--socket", str(self.socket), "--state", str(self.state), "--allow-root",
             str(self.root), "--pool-size", "8", "--no-sync", *self.extra],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env)
        out.close()
        assert wait_for(lambda: self.socket.exists() or self.proc.poll() is not None), self.log.read_text()
        assert self.proc.poll() is None, self.log.read_text()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def ctl(self, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(ASFLOWCTL), "--socket", str(self.socket), *args], cwd=cwd, env=self.env,
                           capture_output=True, text=True, timeout=60)
        if check:
            assert r.returncode == 0, f"asflowctl {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An isolated environment (HOME, XDG dirs under tmp_path), also set in
    this process so that the package's defaults point there: no test can
    reach (or auto-start) the user's own daemon. The process's default
    session engine is closed after each test."""
    home = tmp_path / "home"
    for d in (home, tmp_path / "run", tmp_path / "state"):
        d.mkdir(parents=True, exist_ok=True)
    values = {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
              "XDG_STATE_HOME": str(tmp_path / "state"), "PATH": "/usr/local/bin:/usr/bin:/bin",
              "LANG": "C.UTF-8", "PYTHONPATH": PYTHONPATH}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    for k in ("ASFLOW_SERVER", "ASFLOW_TOKEN_FILE", "ASFLOW_TLS_CA", "ASFLOW_DAEMON"):
        monkeypatch.delenv(k, raising=False)
    yield values
    from asflow.session import reset_default_engine
    reset_default_engine()


@pytest.fixture
def daemon(tmp_path: Path, env: dict[str, str]) -> Iterator[Daemon]:
    if not ASFLOWD.exists():
        pytest.fail(f"{ASFLOWD} is not built (ninja -C build asflowd)")
    (tmp_path / "daemon").mkdir()
    d = Daemon(tmp_path, tmp_path / "d.sock", tmp_path / "daemon" / "state.db", tmp_path / "daemon" / "asflowd.log",
               dict(env))
    d.start()
    yield d
    d.stop()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def engine(daemon: Daemon):
    """A session engine of its own on the test's daemon (closed after)."""
    from asflow.connection import ConnectOptions
    from asflow.session import SessionEngine
    e = SessionEngine(ConnectOptions.resolve(server=daemon.server))
    yield e
    e.close(5.0)


@pytest.fixture
def flow(workspace: Path, engine):
    """A Flow on the workspace, through `engine`."""
    from asflow.flow import Flow
    return Flow(workspace, engine=engine)


def python_env(env: dict[str, str]) -> dict[str, str]:
    return dict(env, PYTHONPATH=PYTHONPATH)


PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
