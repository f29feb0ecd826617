"""Named points where a test can make hostrt die as if SIGKILLed (HOSTRT_FAILPOINT=name), or
stop there as if SIGSTOPped (HOSTRT_FAILPOINT=name:stop).

What a crash leaves behind is only believable if a crash is tested at each step that
changes the system; this is how the tests pick the step. Unset, it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal


def reached(name: str) -> None:
    wanted = os.environ.get("HOSTRT_FAILPOINT")
    if wanted is None or not wanted.startswith(name):
        return
    if wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)
    elif wanted == f"{name}:stop":
        os.kill(os.getpid(), signal.SIGSTOP)
