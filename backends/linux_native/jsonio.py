"""JSON through the C accelerator only. `import json` pulls in `re` and compiles regular
expressions at import time, which costs several milliseconds on every runtime call;
the `_json` scanner and encoder do the same work without that."""

from __future__ import annotations

import _json

_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict = {}


_scan = _json.make_scanner(_Context())
_encode = _json.make_encoder(None, None, _json.encode_basestring, None, ": ", ", ", False, False, True)
_WHITESPACE = " \t\n\r"


def loads(text: str | bytes) -> object:
    """Parse one JSON document; ValueError on anything else."""
    if isinstance(text, bytes):
        text = text.decode()
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"invalid JSON at offset {exc.value}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data after JSON at offset {end}")
    return value


def dumps(value: object) -> str:
    return "".join(_encode(value, 0))


def load_file(path: str) -> object:
    with open(path, "rb") as f:
        return loads(f.read())


def write_atomic(path: str, value: object) -> None:
    """Write then rename, so a reader never sees half a file."""
    from backends.linux_native import fastos as os

    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(dumps(value))
    os.rename(tmp, path)
