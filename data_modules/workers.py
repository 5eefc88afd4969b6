"""The multiprocessing context for the data tools' worker pools (``fasvlm prepare``, ``fasvlm synth``)."""

from __future__ import annotations

import multiprocessing as mp
import sys

__all__ = ["worker_context"]


def worker_context(preload: str):
    """A context whose pools never fork the calling process.

    OpenCV's thread pool (and other libraries' locks) do not survive a fork once used, and the caller (a test session,
    a notebook, a tool that decoded a video) may have used them: forked workers then hang. On Linux a fork server that
    has only imported the module ``preload`` forks the workers (its imports are paid once); elsewhere they are
    spawned, and callers need the usual ``if __name__ == "__main__"`` guard.
    """
    if sys.platform.startswith("linux"):
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([preload])
        return ctx
    return mp.get_context("spawn")
