"""The seed tutorial's two flows as Python (examples/youtube/flows), run as
its README says, offline: the fixture server for YouTube, offline/bin's
yt-dlp and offline/python's youtube_transcript_api, against a real asflowd.
Once plain (what a script sees), once in tmux (the bars a person sees)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from asflow.client import Client, instance_state_name

from conftest import PYTHON, PYTHONPATH, REPO, stop, wait_for

EXAMPLE = REPO / "examples" / "youtube"


@pytest.fixture
def fixture_url(tmp_path: Path):
    proc = subprocess.Popen([PYTHON, str(EXAMPLE / "offline" / "fixture_server.py")], stdout=subprocess.PIPE,
                            text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        yield url
    finally:
        stop(proc)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of examples/youtube (the workspace must be below the daemon's
    allowed root; the source tree stays clean)."""
    dest = tmp_path / "youtube"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return dest


def offline_env(env: dict[str, str], daemon, project: Path, url: str) -> dict[str, str]:
    return dict(env, ASFLOW_SERVER=daemon.server, CHANNEL=f"{url}/@fixture", YOUTUBE_TRANSCRIPT_API=url,
                PATH=f"{project / 'offline' / 'bin'}:{env['PATH']}",
                PYTHONPATH=f"{project / 'offline' / 'python'}:{PYTHONPATH}")


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as r:
        return json.loads(r.read())


def test_the_tutorials_flows_offline(daemon, env, project: Path, fixture_url: str):
    run_env = offline_env(env, daemon, project, fixture_url)
    first = subprocess.run([PYTHON, "-m", "flows.transcripts"], cwd=project, env=run_env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "@flow transcripts() started" in first.stderr and "@flow playlist() started" in first.stderr
    with Client(server=daemon.server) as c:
        (run,) = c.runs()
        assert run.flow == "transcripts" and run.workspace == str(project)
        by = {(i.task, i.params.get("video_id", "")): instance_state_name(i.state) for i in c.tasks(run.id)}
    vids = {v: s for (t, v), s in by.items() if t == "flows.transcripts.extract"}
    assert vids == {**{f"vid{i:02d}": "done" for i in range(1, 11)}, "vid03": "suppressed", "vid07": "suppressed",
                    "vid05": "skipped"}
    assert by[("flows.playlist.extract", "")] == "done" and by[("flows.playlist.transform", "")] == "done"
    err = (project / "data/transcripts/vid03.err").read_text()
    assert "youtube_transcript_api.TranscriptsDisabled" in err and err.startswith("Traceback")
    lines = subprocess.run(["zstd", "-d", "-c", str(project / "data/transcripts/vid01.jsonl.zst")],
                           capture_output=True, check=True).stdout.decode().splitlines()
    assert len(lines) == 25 and json.loads(lines[0]) == {"text": "vid01 line 0", "start": 0.0, "duration": 4.0}
    assert stats(fixture_url)["vid08"] == 2  # the 503 was retried once

    second = subprocess.run([PYTHON, "-m", "flows.transcripts"], cwd=project, env=run_env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    asked = stats(fixture_url)
    assert asked["vid05"] == 2 and all(n == 1 for v, n in asked.items() if v not in ("vid05", "vid08"))


def test_the_bars_a_person_sees(daemon, env, project: Path, fixture_url: str, tmp_path: Path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    run_env = offline_env(env, daemon, project, fixture_url)
    session = f"asflow-py-{tmp_path.name}"
    script = tmp_path / "run.sh"
    exports = " ".join(f"{k}='{v}'" for k, v in run_env.items() if k in (
        "ASFLOW_SERVER", "CHANNEL", "YOUTUBE_TRANSCRIPT_API", "PATH", "PYTHONPATH", "HOME", "XDG_RUNTIME_DIR",
        "XDG_STATE_HOME", "LANG"))
    script.write_text(f"cd '{project}' && env {exports} {PYTHON} -m flows.transcripts; echo EXIT=$?; sleep 60\n")
    subprocess.run(["tmux", "-L", session, "new-session", "-d", "-s", session, "-x", "110", "-y", "30",
                    f"sh {script}"], check=True)
    try:
        def screen() -> str:
            return subprocess.run(["tmux", "-L", session, "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout

        assert wait_for(lambda: "EXIT=" in screen(), 60), screen()
        text = screen()
        assert "EXIT=0" in text, text
        lines = text.splitlines()
        flow_line = next(line for line in lines if line.startswith("@flow transcripts()"))
        assert "━" in flow_line and "100%" in flow_line
        task_lines = [line for line in lines if line.startswith(" @task extract()")]
        assert any("10/10" in line and "100%" in line for line in task_lines), text
    finally:
        subprocess.run(["tmux", "-L", session, "kill-server"], capture_output=True)
        time.sleep(0.1)
