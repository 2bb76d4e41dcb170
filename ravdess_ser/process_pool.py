"""What every pool of spawned processes here needs: Ctrl-C kept from its processes while they start, and their
end when their parent ends."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading


@contextlib.contextmanager
def sigint_held():
    """Ctrl-C held back while the pool starts its processes.

    Blocked in this thread, SIGINT stays blocked in the processes it starts (the mask survives exec), so it never
    reaches them, not even while they import torch before their initializer runs. A SIGINT that comes meanwhile
    (another thread of this process, which does not block it, may take it) is kept by a handler and handed to the
    previous one on leaving: a KeyboardInterrupt raised halfway through starting a process left that process
    without its instructions, and it printed an EOFError traceback.
    """
    held = []
    handler = signal.getsignal(signal.SIGINT)
    in_charge = threading.current_thread() is threading.main_thread() and handler is not None
    if in_charge:
        signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending SIGINT arrives now, in the handler above
        if in_charge:
            signal.signal(signal.SIGINT, handler)
    if held and callable(handler):
        handler(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """A pool initializer: this process is killed when ``parent`` (the pool's creator) dies, even by SIGKILL.

    A pool's processes hold both ends of their task queue, so a parent killed without cleanup never gives them the
    EOF they would stop on: they lived on, holding the stage's stdout and stderr open, and a caller waiting for
    those (DVC, a test) waited for ever. Linux only (prctl); elsewhere a no-op.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(1)
