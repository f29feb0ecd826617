"""OCI hooks: each runs with the container state as JSON on stdin, its own env, and an
optional timeout; a failing hook fails the step that ran it (poststop: a warning)."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native import jsonio
from backends.linux_native.errors import RuntimeFailure
from backends.linux_native.pidwait import wait_exit


def run(hooks: list, state: dict, kind: str) -> None:
    payload = jsonio.dumps(state).encode()
    for hook in hooks:
        run_one(hook, payload, kind)


def run_one(hook, payload: bytes, kind: str) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(read_end, 0)
            env = dict(e.split("=", 1) for e in hook.env if "=" in e)
            os.execve(hook.path, hook.args, env)
        except BaseException as exc:  # noqa: BLE001 - the child must never return
            os.write(2, f"hook {hook.path}: {exc}\n".encode())
        os._exit(127)
    os.close(read_end)
    try:
        os.write(write_end, payload)
    except BrokenPipeError:
        pass
    os.close(write_end)
    if hook.timeout and not wait_exit(pid, hook.timeout):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise RuntimeFailure(f"{kind} hook {hook.path} timed out after {hook.timeout}s")
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeFailure(f"{kind} hook {hook.path} failed with status {code}")
