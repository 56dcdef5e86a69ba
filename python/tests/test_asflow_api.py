"""The parts of AsFlow's API that need no daemon: Flow, flow.path, the
checks made at decoration time, Retry, serializers, compressor choice, the
`*` hash, encode_params, the .err path, writing inside a task."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from pathlib import Path

import pytest

import asflow
from asflow.compressors import compressor_for
from asflow.flow import Flow
from asflow.naming import check_on, encode_params, err_path_for, star_hash
from asflow.retry import Retry
from asflow.serializers import JSONLSerializer, JSONSerializer, TextSerializer, serializer_for
from asflow.task import TaskCancelled, TaskRun


def test_default_flow_and_path(tmp_path):
    assert isinstance(asflow.flow, Flow)
    assert asflow.flow.base == Path(".")
    f = Flow(tmp_path)
    assert f.path("data/x.json") == tmp_path / "data/x.json"
    assert Flow(base=str(tmp_path), verbose=True).verbose is True
    assert f.run is None and f.task.run is None


def test_flow_only_on_async_functions(tmp_path):
    f = Flow(tmp_path)
    with pytest.raises(AssertionError):
        @f
        def plain():
            pass

    @f(progress=False)
    async def ok():
        return 1

    assert inspect.iscoroutinefunction(ok) and ok.__name__ == "ok"


def test_task_wrappers_keep_kind_and_metadata(tmp_path):
    f = Flow(tmp_path)

    @f.task
    def sync_task(x):
        """doc"""

    @f.task(on="data/{x}.json")
    async def async_task(x):
        pass

    class Callable:
        async def __call__(self, x):
            pass

    obj = f.task(on="o/{x}.txt")(Callable())
    assert not inspect.iscoroutinefunction(sync_task) and sync_task.__doc__ == "doc"
    assert inspect.iscoroutinefunction(async_task) and async_task.__name__ == "async_task"
    assert inspect.iscoroutinefunction(obj)
    assert (tmp_path / "data").is_dir() and (tmp_path / "o").is_dir()  # parents made when decorated


def test_bad_retry_is_a_type_error_at_decoration(tmp_path):
    f = Flow(tmp_path)
    for bad in ("3", 1.5, True, [1]):
        with pytest.raises(TypeError):
            f.task(retry=bad)(lambda: None)
    assert f.task(retry=0)(lambda: None).task.retry == Retry(total=0)
    t = f.task(retry=2, retry_exceptions=(ConnectionError,))(lambda: None).task
    assert t.retry == Retry(total=2, exceptions=(ConnectionError,))
    assert t.retry.backoff_jitter == 1.0
    with pytest.raises(TypeError):
        f.task(skip=("ParseError",))(lambda: None)
    with pytest.raises(TypeError):
        f.task(unknown=1)(lambda: None)


def test_on_templates(tmp_path):
    f = Flow(tmp_path)
    with pytest.raises(ValueError, match=r"more than one '\*'"):
        f.task(on="data/*-*.json")(lambda x: None)
    with pytest.raises(ValueError, match="URLs"):
        check_on("s3://bucket/{x}.json")
    with pytest.raises(ValueError, match="no parameter 'vid'"):
        f.task(on="data/{vid}.json")(lambda video_id: None)
    assert check_on("data/*.jsonl.zst") == "data/{hash}.jsonl.zst"


def test_star_hash_and_encode_params(tmp_path):
    assert encode_params(("a", 1), {"k": "v", "n": 2}) == "a, 1, k=v, n=2"
    assert star_hash("extract", ("abc",), {"lang": "en"}) == hashlib.md5(b"extract(abc, lang=en)").hexdigest()
    f = Flow(tmp_path)

    @f.task(on="data/t/*.jsonl")
    def extract(video_id, lang="en"):
        pass

    call = extract.task.bind(("abc",), {"lang": "fr"})
    assert call.output == f"data/t/{hashlib.md5(b'extract(abc, lang=fr)').hexdigest()}.jsonl"
    assert call.params == (("video_id", "abc"), ("lang", "fr"))  # the signature's order
    assert call.label == "abc, lang=fr"
    # Every plain parameter given positionally: bound without inspect, the
    # label made from the params when asked.
    @f.task(on="d/{a}-{b}.txt")
    def plain(a, b):
        pass

    call = plain.task.bind((1, "x"), {})
    assert (call.params, call.output, call.label) == ((("a", "1"), ("b", "x")), "d/1-x.txt", "1, x")
    with pytest.raises(TypeError):
        plain.task.bind((1,), {})  # inspect's error, as the call itself would raise
    # Defaults are applied for the template, not for the hash text.
    named = f.task(on="d/{video_id}-{lang}.json")(lambda video_id, lang="en": None).task
    assert named.bind(("x",), {}).output == "d/x-en.json"


def test_err_path_strips_the_templates_suffixes_only():
    assert err_path_for("data/t/abc.jsonl.zst", "data/t/{id}.jsonl.zst") == "data/t/abc.err"
    assert err_path_for("data/t/a.b.jsonl.zst", "data/t/{id}.jsonl.zst") == "data/t/a.b.err"
    assert err_path_for("data/t/x.tar.gz", "data/t/*.tar.gz") == "data/t/x.err"
    assert err_path_for("data/plain", "data/{id}") == "data/plain.err"
    assert err_path_for("data/.hidden", "data/.hidden") == "data/.hidden.err"


def test_cached_by_output_or_err(tmp_path):
    f = Flow(tmp_path)
    t = f.task(on="data/{x}.jsonl.zst")(lambda x: None).task
    call = t.bind(("a.b",), {})
    assert call.err_path == "data/a.b.err" and not call.cached()
    (tmp_path / "data/a.b.err").write_text("Traceback ...\n")
    assert call.cached()


def test_serializers_by_suffix():
    assert isinstance(serializer_for("a.json"), JSONSerializer)
    assert isinstance(serializer_for("a.json.gz"), JSONSerializer)
    assert isinstance(serializer_for("a.jsonl.zst"), JSONLSerializer)
    assert isinstance(serializer_for("a.parquet"), JSONLSerializer)
    assert isinstance(serializer_for("a.txt"), TextSerializer)
    assert isinstance(serializer_for("a"), TextSerializer)
    jsonl = JSONLSerializer()
    assert jsonl.dumps(b'{"raw": 1}\n') == b'{"raw": 1}\n'
    assert jsonl.dumps("line") == b"line\n"
    assert jsonl.dumps({"a": [1, "é"]}) == (json.dumps({"a": [1, "é"]}) + "\n").encode()
    assert JSONSerializer().dumps({"a": 1}) == b'{"a": 1}'
    assert serializer_for("a.json", {"indent": 2}).dumps({"a": 1}) == b'{\n  "a": 1\n}'
    assert TextSerializer().dumps("héllo") == "héllo".encode()
    with pytest.raises(TypeError):
        serializer_for("a.json", 42)


def test_compressor_by_last_suffix():
    assert compressor_for("a.jsonl.zst").name == "zstd"
    assert compressor_for("a.json.gz").name == "gzip"
    assert compressor_for("a.gz.json").name == "none"
    assert compressor_for("a.zst", {"level": 19}).level == 19
    with pytest.raises(ValueError):
        compressor_for("a.gz", {"level": 12})
    with pytest.raises(ValueError):
        compressor_for("a.zst", {"threads": 2})


def test_retry_policy():
    r = Retry(total=3, backoff_factor=0.5, backoff_jitter=0.0, exceptions=(ConnectionError,))
    assert [r.sleep_time(k) for k in range(3)] == [0.5, 1.0, 2.0]
    assert r.retries(ConnectionResetError(), 2) and not r.retries(ConnectionResetError(), 3)
    assert not r.retries(ValueError(), 0)
    rule = r.to_rule()
    assert (rule.attempts, list(rule.errors), rule.backoff.ToNanoseconds(), rule.jitter.ToNanoseconds()) == (
        3, ["ConnectionError"], 500_000_000, 0)
    assert Retry().total == 10 and Retry().backoff_jitter == 1.0


def test_task_spec_for_the_daemon(tmp_path):
    import xml.etree.ElementTree as ET
    f = Flow(tmp_path)
    t = f.task(on="data/{v}.jsonl.zst", limit=4, skip=(ET.ParseError,), suppress=(KeyError,),
               retry=Retry(total=1, exceptions=(ConnectionError,)))(lambda v: None).task
    spec = t.to_spec()
    assert spec.on == "data/{v}.jsonl.zst" and spec.limit == 4
    assert list(spec.skip.errors) == ["xml.etree.ElementTree.ParseError"]
    assert list(spec.suppress.errors) == ["KeyError"]
    assert list(spec.retry.errors) == ["ConnectionError"] and spec.retry.attempts == 1
    assert spec.name.endswith("test_task_spec_for_the_daemon.<locals>.<lambda>")


def test_write_inside_a_task_run():
    written: list[bytes] = []
    run = TaskRun("x", "data/x.jsonl.zst", written.append)
    f = Flow()
    with pytest.raises(RuntimeError, match="outside a running task"):
        f.task.write({"a": 1})
    assert f.task.progress() is None
    with run:
        assert f.task.run is run
        f.task.write({"a": 1})
        f.task.write("two")
        p = f.task.progress(total=5)
        p.advance(2)
        assert (p.total, p.completed) == (5.0, 2.0)
    assert written == [b'{"a": 1}\n', b"two\n"] and (run.bytes, run.lines) == (13, 2)
    run.cancelled = True
    with pytest.raises(TaskCancelled):
        run.write("late")


def test_task_run_follows_asyncio_tasks():
    f = Flow()
    seen = []

    async def inner(name):
        run = TaskRun(name, None, lambda b: seen.append((name, b)))
        with run:
            await asyncio.sleep(0)
            f.task.write(name)

    async def main():
        await asyncio.gather(inner("a"), inner("b"))

    asyncio.run(main())
    assert sorted(seen) == [("a", b"a\n"), ("b", b"b\n")]


def test_the_serializer_follows_the_rendered_suffix_when_the_template_leaves_it_open(tmp_path):
    from asflow.task import TaskDef

    def f(name):
        pass

    open_ = TaskDef(f, tmp_path, on="r/{name}")
    assert isinstance(open_.serializer_for("r/a.json"), JSONSerializer)
    assert isinstance(open_.serializer_for("r/a.jsonl.zst"), JSONLSerializer)
    assert isinstance(open_.serializer_for("r/a.txt"), TextSerializer)
    fixed = TaskDef(f, tmp_path, on="r/{name}.jsonl")
    assert fixed.serializer_for("r/x.json.jsonl") is fixed.serializer


# Throttle keys, cooldown rules and rates (issue 16): what is sent.

def test_a_flows_throttle_keys_go_in_every_open_run(tmp_path: Path):
    import datetime
    from asflow.stream import OPEN_RUN, build_request
    from asflow.throttle import Cooldown

    flow = Flow(tmp_path, throttle={"youtube": {"limit": 4, "rate": "2/s"}})
    flow.throttle("search", rate="auto(max: 5/s, min: 0.1/s)")
    flow.throttle("plain")
    keys = flow.throttle_keys
    assert {k: (v.limit, v.rate) for k, v in keys.items()} == {
        "youtube": (4, "2/s"), "search": (0, "auto(max: 5/s, min: 0.1/s)"), "plain": (0, "")}
    request = build_request([(OPEN_RUN, 1, "f", str(tmp_path), {}, "f.py", False, 0, keys)])
    assert request.ops[0].open_run.throttle["youtube"].limit == 4
    assert sorted(request.ops[0].open_run.throttle) == ["plain", "search", "youtube"]

    class Throttled(Exception):
        pass

    @flow.task(uses=["youtube"], rate="auto",
               cooldown=Cooldown(errors=[Throttled, "urllib.error.HTTPError"], message=r"429|Too Many",
                                 retry_after=r"Retry-After: (\d+)", for_=datetime.timedelta(seconds=90),
                                 max_cooldowns=3))
    def fetch(i):
        pass

    spec = fetch.task.to_spec()
    assert spec.rate == "auto" and list(spec.uses) == ["youtube"]
    assert list(spec.cooldown.errors) == ["Throttled", "urllib.error.HTTPError"]  # (a local class: bare)
    assert spec.cooldown.stderr == "429|Too Many" and spec.cooldown.retry_after == r"Retry-After: (\d+)"
    assert spec.cooldown.duration.seconds == 90 and spec.cooldown.max_cooldowns == 3
    assert asflow.Cooldown is Cooldown


@pytest.mark.parametrize("make, error, match", [
    (lambda: Flow(throttle={"a b": {"limit": 1}}), ValueError, r"only use \[A-Za-z0-9_.-\]"),
    (lambda: Flow(throttle={"k": {"limit": -1}}), ValueError, "limit=-1"),
    (lambda: Flow(throttle={"k": {"burst": 1}}), TypeError, "unknown field 'burst'"),
    (lambda: Flow(throttle=["k"]), TypeError, "expected a mapping"),
    (lambda: Flow().throttle("k", rate="fast"), ValueError, "rate='fast'"),
    (lambda: Flow().throttle("k", rate="auto(max: 1/s, min: 2/s)"), ValueError, "min is above max"),
    (lambda: Flow().throttle("k", rate="auto(fast: 1/s)"), ValueError, "unknown bound 'fast'"),
    (lambda: Flow().throttle("k", rate="auto max"), ValueError, r"bounds go in \( \)"),
    (lambda: asflow.Cooldown(), ValueError, "matches nothing"),
    (lambda: asflow.Cooldown(errors=[3]), TypeError, "not an exception class or name"),
    (lambda: asflow.Cooldown(message="("), ValueError, "invalid regular expression"),
    (lambda: asflow.Cooldown(message="x", retry_after="Retry-After: \\d+"), ValueError, "one capture group"),
    (lambda: asflow.Cooldown(message="x", for_=0), ValueError, r"for_=0\): must be > 0"),
    (lambda: asflow.Cooldown(message="x", max_cooldowns=0), ValueError, "max_cooldowns=0"),
    (lambda: Flow().task(cooldown="429")(lambda: None), TypeError, "asflow.throttle.Cooldown"),
])
def test_bad_throttle_declarations_are_refused_where_they_are_made(make, error, match):
    with pytest.raises(error, match=match):
        make()
