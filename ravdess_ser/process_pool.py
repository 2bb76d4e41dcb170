"""What every pool of spawned processes here needs: Ctrl-C kept from its processes while they start."""

from __future__ import annotations

import contextlib
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
