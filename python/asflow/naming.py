"""Output paths as AsFlow names them: `on` templates filled from a call's
bound arguments, `*` as the MD5 of `func_name(a1, a2, k=v)`, and the
`.err` path of a suppressed instance."""

from __future__ import annotations

import hashlib
import inspect
import string
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any


def encode_params(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """`a1, a2, k=v`: positional arguments with str(), then keyword
    arguments as k=v in call order, joined by ", " (the instance's label
    and the text the `*` hash is taken of)."""
    parts = [str(a) for a in args]
    parts += [f"{k}={v}" for k, v in kwargs.items()]
    return ", ".join(parts)


def star_hash(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """Hex MD5 of `func_name(a1, a2, k=v)`."""
    return hashlib.md5(f"{func_name}({encode_params(args, kwargs)})".encode()).hexdigest()


def check_on(on: str) -> str:
    """Checks an `on` template at decoration time and returns it with `*`
    replaced by `{hash}`. ValueError for two `*` in the file name, a `*` in
    a directory, a URL, an absolute path or a malformed template."""
    if "://" in on:
        raise ValueError(f"on={on!r}: URLs are not supported; give a path relative to the flow's base")
    if on.startswith("/"):
        raise ValueError(f"on={on!r}: must be relative to the flow's base")
    directory, _, name = on.rpartition("/")
    if "*" in directory:
        raise ValueError(f"on={on!r}: '*' may only appear in the file name")
    if name.count("*") > 1:
        raise ValueError(f"on={on!r}: more than one '*' in the file name")
    template = f"{directory}/{name.replace('*', '{hash}')}" if directory else name.replace("*", "{hash}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"on={on!r}: {e}") from None
    if "" in fields:
        raise ValueError(f"on={on!r}: '{{}}' needs a parameter name")
    return template


def template_names(template: str) -> list[str]:
    """The top-level names a template uses ("{video_id}" -> video_id)."""
    names = []
    for _, f, _, _ in string.Formatter().parse(template):
        if f:
            root = f.split(".", 1)[0].split("[", 1)[0]
            if root not in names:
                names.append(root)
    return names


def bind_arguments(signature: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments bound to the signature, defaults applied
    (TypeError as the call itself would raise)."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def render_on(template: str, func_name: str, arguments: Mapping[str, Any], args: Sequence[Any],
              kwargs: Mapping[str, Any]) -> str:
    """The output path of one call: `template` (from check_on) filled from
    the bound `arguments` and `hash` (of the call as written)."""
    values = dict(arguments)
    if "{hash}" in template or "{hash" in template:
        values["hash"] = star_hash(func_name, args, kwargs)
    try:
        return template.format_map(values)
    except KeyError as e:
        raise TypeError(f"on={template!r}: {func_name}() has no argument {e.args[0]!r}") from None


def err_path_for(output: str, on: str) -> str:
    """The `.err` path of an output: the suffixes the `on` template ends
    with are stripped ("data/t/{id}.jsonl.zst" renders a.b.jsonl.zst ->
    data/t/a.b.err; AsFlow strips every suffix and would give a.err), as
    the daemon's ErrorPathFor (common/safe_path.cc) does."""
    base = on.rsplit("/", 1)[-1]
    tail, search_from = base, 1  # a leading dot (".hidden") is no extension
    brace = base.rfind("}")
    if brace >= 0:
        tail, search_from = base[brace + 1:], 0
    suffix = ""
    dot = tail.find(".", min(search_from, len(tail)))
    if dot >= 0:
        suffix = tail[dot:].replace("{{", "{")
    stem = output
    if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
        stem = stem[: -len(suffix)]
    return stem + ".err"


def suffixes(path: str) -> list[str]:
    """PurePosixPath(path).suffixes: [".jsonl", ".zst"]."""
    return PurePosixPath(path).suffixes
