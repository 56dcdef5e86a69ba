"""The progress view (rich bars on a terminal, plain lines elsewhere) and
the flow-file parser (the same FlowSpec as asflowctl's)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from asflow.flowfile import FlowFileError, parse_flow_file, parse_flow_text
from asflow.progress import InstanceProgress, ProgressView

from conftest import REPO

SPEC = REPO / "tests" / "testdata" / "spec"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def terminal_view(clock: Clock) -> tuple[ProgressView, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None, legacy_windows=False)
    view = ProgressView(console=console, clock=clock)
    view._progress.live.auto_refresh = False  # drawn only when asked: deterministic
    return view, out


def screen(view: ProgressView) -> str:
    # The last frame rich would draw, as text.
    console = Console(file=io.StringIO(), width=100, color_system=None, force_terminal=False)
    with console.capture() as cap:
        console.print(view._progress.get_renderable())
    return cap.get()


def test_terminal_bars_flow_task_and_running_instances():
    clock = Clock()
    view, _ = terminal_view(clock)
    view.flow_started("f", "transcripts()")
    for vid in ("F6PqxbvOCUI", "Pv0iVoSZzN8", "l-nMKJ5J3Uc"):
        view.instance_started("extract", "extract()", vid, vid)
    view.instance_cached("extract", "extract()", "cached1", "cached1")
    clock.now += 2
    view.instance_finished("F6PqxbvOCUI", "done")
    handle = InstanceProgress(view, "Pv0iVoSZzN8")
    handle.update(total=4)
    handle.advance(3)
    lines = [line.rstrip() for line in screen(view).splitlines()]
    assert lines[0].startswith("@flow transcripts()") and "0%" in lines[0]
    assert lines[1].startswith(" @task extract()") and lines[1].endswith("2/4") and "50%" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["Pv0iVoSZzN8", "l-nMKJ5J3Uc"]
    assert "75%" in lines[2] and "0%" in lines[3]
    assert view.counts("extract") == (2, 4)
    view.flow_finished("f")
    assert "100%" in screen(view).splitlines()[0]
    view.close()


def test_queued_calls_count_in_the_total_and_show_once_started():
    view, _ = terminal_view(Clock())
    for i in range(4):
        view.instance_queued("t", "t()", i, f"item{i}")
    view.instance_started("t", "t()", 1, "item1")
    lines = [line.rstrip() for line in screen(view).splitlines()]
    assert lines[0].startswith(" @task t()") and lines[0].endswith("0/4")
    assert [line.split()[0] for line in lines[1:]] == ["item1"]
    view.instance_finished(0, "cached")
    view.instance_finished(1, "done")
    assert view.counts("t") == (2, 4) and len(screen(view).splitlines()) == 1
    view.close()


def test_running_lines_are_capped():
    clock = Clock()
    view, _ = terminal_view(clock)
    view.max_instances = 2
    for i in range(5):
        view.instance_started("t", "t()", i, f"item{i}")
    lines = screen(view).splitlines()
    assert len(lines) == 3 and "0/5" in lines[0]
    view.close()


def test_plain_lines_off_a_terminal():
    clock = Clock()
    out = io.StringIO()
    view = ProgressView(stream=out, clock=clock)
    assert view.plain
    view.flow_started("f", "playlist()")
    view.instance_started("extract", "extract()", 1, "https://example.org/c")
    clock.now += 1.25
    view.instance_finished(1, "done")
    view.instance_started("extract", "extract()", 2, "x")
    view.instance_finished(2, "failed", "ValueError: boom")
    view.flow_finished("f", "failed")
    assert out.getvalue().splitlines() == [
        "@flow playlist() started",
        " @task extract() https://example.org/c: done in 1.2s (1/1)",
        " @task extract() x: failed in 0.0s (2/2): ValueError: boom",
        "@flow playlist() failed in 1.2s",
    ]
    assert "\x1b" not in out.getvalue()


def test_demo_in_yaml_json_and_text():
    yaml_spec = parse_flow_file(SPEC / "good_demo.yaml").spec
    text = parse_flow_file(SPEC / "good_demo.txtpb").spec  # a shorter flow in protobuf text
    assert (text.tasks[1].limit, dict(text.tasks[1].for_each.bind)) == (4, {"video_id": "id"})
    parsed = parse_flow_file(SPEC / "good_demo.json")  # a shorter flow, camelCase keys
    assert dict(parsed.spec.tasks[1].for_each.bind) == {"video_id": "id"}
    assert parsed.spec.tasks[1].timeout.seconds == 120
    assert parsed.where.locate("tasks[1].limit") == f"{SPEC / 'good_demo.json'}:11:6"
    langs = yaml_spec.tasks[2]
    assert list(langs.for_each.values) == ["en", "42", '{"code":"fr","n":7,"ok":true,"q":"1","none":null}',
                                           '[1,"x"]']
    assert dict(langs.for_each.bind) == {"lang": ""}
    extract = yaml_spec.tasks[1]
    assert (extract.timeout.seconds, extract.retry.backoff.seconds, extract.retry.jitter.seconds) == (120, 2, 1)


@pytest.mark.parametrize("name, message", [
    ("bad_unknown_key.yaml", "bad_unknown_key.yaml:7:5: tasks[0].limt: unknown field 'limt' (expected one of: "
                             "name, run, handler, on, needs, for_each, limit, rate, pool, timeout, retry, skip, "
                             "suppress, compression_level, uses, cooldown)"),
    ("bad_syntax.yaml", "bad_syntax.yaml:5:1: invalid YAML: "),
    ("bad_duration.yaml", "bad_duration.yaml:5:5: tasks[0].timeout: '120' needs a unit, e.g. 120s"),
])
def test_parse_errors_name_file_line_and_field(name, message):
    text = (SPEC / name).read_text()
    with pytest.raises(FlowFileError) as e:
        parse_flow_text(text, name, "yaml")
    assert str(e.value).startswith(message), str(e.value)


def test_run_as_one_string_is_refused():
    with pytest.raises(FlowFileError) as e:
        parse_flow_text("name: x\ntasks:\n  - name: t\n    run: yt-dlp -j URL\n", "f.yaml", "yaml")
    assert str(e.value) == ("f.yaml:4:5: tasks[0].run: expected a list of arguments (argv, never a shell), got "
                            "'yt-dlp -j URL'; write run: [prog, arg, ...]")
