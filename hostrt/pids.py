"""Whether a process runs, asked the way each OS answers it without side effects.

POSIX: signal 0 checks without delivering anything. Windows has no signal 0: `os.kill(pid, 0)`
there is CTRL_C_EVENT sent to a console process group (and any other number terminates the
process), so the question goes to the process table instead, through the standard library's
`_winapi`.
"""

from __future__ import annotations

import os
import sys

_QUERY_LIMITED_INFORMATION = 0x1000  # PROCESS_QUERY_LIMITED_INFORMATION: granted for other users' processes too


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (a zombie counts on POSIX, as for kill)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def _windows_alive(pid: int) -> bool:
    import _winapi

    try:
        handle = _winapi.OpenProcess(_QUERY_LIMITED_INFORMATION, False, pid)
    except PermissionError:
        return True  # it exists; only a protected process refuses even this access
    except OSError:
        return False  # ERROR_INVALID_PARAMETER: no such process
    try:
        return _winapi.GetExitCodeProcess(handle) == _winapi.STILL_ACTIVE
    finally:
        _winapi.CloseHandle(handle)
