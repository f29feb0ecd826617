"""Log lines for `--log`: runc's JSON form ({"level","msg","time"}) because containerd
shows the last error line of that file to its user, or plain text."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import sys
import time

from backends.linux_native import jsonio

_LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}


class Logger:
    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.configure(path, fmt, debug)

    def configure(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.min_level = 0 if debug else 1

    def _write(self, level: str, msg: str) -> None:
        if _LEVELS[level] < self.min_level:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            line = jsonio.dumps({"level": level, "msg": msg, "time": stamp}) + "\n"
        else:
            line = f"{stamp} {level}: {msg}\n"
        if self.path:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
                if level != "error":
                    return
            except OSError:
                pass
        if level == "error":
            sys.stderr.write(f"hostrt-runtime: {msg}\n")
        elif not self.path and self.min_level == 0:
            sys.stderr.write(line)

    def debug(self, msg: str) -> None:
        self._write("debug", msg)

    def info(self, msg: str) -> None:
        self._write("info", msg)

    def warning(self, msg: str) -> None:
        self._write("warning", msg)

    def error(self, msg: str) -> None:
        self._write("error", msg)


LOG = Logger()
"""The process-wide logger, configured once by the command line."""
