"""Named points where a test can make hostrt die as if SIGKILLed (HOSTRT_FAILPOINT=name).

What a crash leaves behind is only believable if a crash is tested at each step that
changes the system; this is how the tests pick the step. Unset, it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal


def reached(name: str) -> None:
    if os.environ.get("HOSTRT_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
