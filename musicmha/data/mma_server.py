"""mma without its start-up: a helper process that imports mma's modules once and forks per song.

Half of an `mma` run (~0.05 of ~0.1 s CPU) is the interpreter starting and importing mma's modules, and a
corpus build runs mma 20,000 times. The helper (mma's own interpreter, PYTHONHASHSEED=0 as for a plain run)
imports every module MMA.main imports, then for each request forks a child that runs MMA.main on the
request's arguments, exactly as `mma ARGS` would (tests/data/test_arrange.py compares the bytes). One
helper per process (a corpus worker), started on first use; run() returns None when none can be had, and
the caller runs plain `mma` instead.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess

# The helper: reads one JSON request a line ([argv, log path]), answers the child's exit status.
HELPER = r"""
import json, os, sys, platform
import __main__
root = sys.argv[1]
__main__.MMAdir, __main__.platform = root, platform.system()
sys.path.insert(0, root)
for line in open(os.path.join(root, "MMA", "main.py")):
    line = line.strip()
    if line.startswith(("import MMA.", "from MMA")):
        try:
            exec(line)
        except Exception:
            pass
for request in sys.stdin:
    argv, log = json.loads(request)
    pid = os.fork()
    if pid == 0:
        os.chdir(os.path.dirname(log))
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.argv = ["mma", *argv]
        code = 0
        try:
            import MMA.main
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            code = 1
        sys.stdout.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""

_helper: subprocess.Popen | None = None
_broken = False


def _start(exe: str) -> subprocess.Popen | None:
    """The helper for the `mma` at `exe`: its interpreter (the #! line) and module folder."""
    try:
        with open(exe) as f:
            shebang = f.readline()
        python = shebang[2:].split()[0] if shebang.startswith("#!") else None
        root = next((d for d in ("/usr/local/share/mma", "/usr/share/mma") if os.path.isdir(os.path.join(d, "MMA"))),
                    None)
        if python is None or "python" not in python or root is None or os.environ.get("MMA_HOME"):
            return None
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        return subprocess.Popen([python, "-c", HELPER, root], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1, start_new_session=True)
    except OSError:
        return None


def stop() -> None:
    """End the helper and a song it is running (its own process group)."""
    global _helper
    if _helper is not None:
        try:
            os.killpg(_helper.pid, signal.SIGKILL)
        except OSError:
            pass
        _helper.wait()
        _helper = None


def run(exe: str, argv: list[str], log: str, timeout: float) -> int | None:
    """mma's exit status for `mma ARGV` with its output in the file `log`; None when the helper is not
    available (or died: it is not tried again in this process). TimeoutError past `timeout` seconds."""
    global _helper, _broken
    if _broken:
        return None
    if _helper is None or _helper.poll() is not None:
        _helper = _start(exe)
        if _helper is None:
            _broken = True
            return None
        atexit.register(stop)
    try:
        _helper.stdin.write(json.dumps([argv, log]) + "\n")
        _helper.stdin.flush()
        ready, _, _ = select.select([_helper.stdout], [], [], timeout)
        if not ready:
            stop()  # its child goes with it: the next song starts a fresh helper
            raise TimeoutError
        answer = _helper.stdout.readline()
        return int(answer)
    except (OSError, ValueError):
        stop()
        _broken = True
        return None
