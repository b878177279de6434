"""``LiveRules``: watch a source and swap each valid version into a limiter.

A daemon thread iterates the source's ``watch``; each document goes through the
loader, and a valid one through ``limiter.update_rules`` (an atomic swap that keeps
the state of unchanged rules and gives back the leases of changed ones). An
invalid one is logged and counted, and the last good rules stay live.

For an :class:`~ratemw.AsyncLimiter` the thread parses and validates, then hands
the swap to the event loop it was created on (``call_soon_threadsafe``); with no
running loop (or once that loop has stopped) it swaps from the thread, which
``update_rules`` allows (it takes no loop-bound object).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ratemw.config.loader import Loaded, load_document
from ratemw.config.sources import Source, SourceDocument
from ratemw.errors import ConfigError
from ratemw.limiter import AsyncLimiter, Limiter
from ratemw.rules.model import RuleSet

__all__ = ["LiveRules", "Transform"]

log = logging.getLogger("ratemw.config")

#: applied to every loaded rule set before the swap (adapters merge decorator rules)
Transform = Callable[[RuleSet], RuleSet]

_HANDOVER_TIMEOUT_SECONDS = 5.0
_CLOSE_JOIN_SECONDS = 2.0


class LiveRules:
    """Keep ``limiter``'s rules in step with ``source``.

    ``ruleset`` is the rule set the limiter was built from (default: its current
    one); ``transform`` maps each loaded rule set before the swap; ``start=False``
    only holds (no thread). ``version`` is the digest of the rules in force
    (before ``transform``); ``reloads_ok`` / ``reloads_failed`` count swaps and
    rejected versions; ``last_error`` says why the last one was rejected (``None``
    after a success). Stopped by :meth:`close`, or when garbage-collected.
    """

    def __init__(
        self,
        limiter: Limiter | AsyncLimiter,
        source: Source,
        *,
        ruleset: RuleSet | None = None,
        transform: Transform | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        start: bool = True,
    ) -> None:
        self.limiter = limiter
        self.source = source
        self.transform = transform
        base = ruleset if ruleset is not None else limiter.snapshot.ruleset
        self._base = base
        self.version: str = base.digest
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_error: str | None = None
        self.last_problems: tuple[Any, ...] = ()
        self._changed = threading.Condition()
        self._apply_lock = threading.RLock()
        self._offered = 0  # offers numbered, so a late hand-over never undoes a newer swap
        self._applied = 0
        self._loop = loop
        if loop is None and isinstance(limiter, AsyncLimiter):
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The thread holds only a weak reference: an abandoned LiveRules stops itself.
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, source)
        if start:
            self._thread = threading.Thread(
                target=_watch,
                args=(weakref.ref(self), source, self._stop),
                name=f"ratemw-rules {source.origin}",
                daemon=True,
            )
            self._thread.start()

    # -- applying -----------------------------------------------------------------

    def offer(self, doc: SourceDocument) -> bool:
        """Load ``doc`` and, when valid and new, swap it in. Returns whether the rules
        in force are ``doc``'s afterwards. Called by the watch thread; usable directly."""
        loaded = load_document(doc)
        if not loaded.ok:
            self._failed(loaded.origin, "; ".join(str(p) for p in loaded.errors), loaded)
            return False
        ruleset = loaded.raise_for_errors()
        if ruleset.digest == self.version:
            return True
        with self._apply_lock:
            self._offered += 1
            seq = self._offered
        loop = self._loop
        if loop is not None and loop.is_running() and not _in_loop(loop):
            future = concurrent.futures.Future[bool]()
            try:
                loop.call_soon_threadsafe(self._apply_into, ruleset, seq, future)
            except RuntimeError:  # the loop closed meanwhile
                return self._apply(ruleset, seq)
            try:
                return future.result(_HANDOVER_TIMEOUT_SECONDS)
            except concurrent.futures.TimeoutError:
                # The loop is stuck or stopped: swap from here. The queued call, if it
                # ever runs, finds its offer superseded and does nothing.
                return self._apply(ruleset, seq)
        return self._apply(ruleset, seq)

    def _apply_into(
        self, ruleset: RuleSet, seq: int, future: concurrent.futures.Future[bool]
    ) -> None:
        result = self._apply(ruleset, seq)
        if not future.done():
            future.set_result(result)

    def _apply(self, ruleset: RuleSet, seq: int) -> bool:
        with self._apply_lock:
            if seq <= self._applied:
                return ruleset.digest == self.version
            self._applied = seq
            if ruleset.digest == self.version:
                return True
            try:
                final = self.transform(ruleset) if self.transform is not None else ruleset
                self.limiter.update_rules(final)
            except ConfigError as exc:
                # update_rules counted this one in ratemw_config_reloads_total
                self._failed(ruleset.source, str(exc), None, exc.problems, counted=True)
                return False
            except Exception as exc:  # a broken transform must not kill the watcher
                log.exception("ratemw: applying rules from %s failed", ruleset.source)
                self._failed(ruleset.source, f"{type(exc).__name__}: {exc}", None)
                return False
            self._base = ruleset
            with self._changed:
                self.version = ruleset.digest
                self.reloads_ok += 1
                self.last_error = None
                self.last_problems = ()
                self._changed.notify_all()
        log.info("ratemw: rules version %s from %s in force (%d rules)",
                 ruleset.digest[:12], ruleset.source, len(ruleset.rules))  # fmt: skip
        return True

    def _failed(
        self,
        origin: str,
        reason: str,
        loaded: Loaded | None,
        problems: tuple[Any, ...] = (),
        counted: bool = False,
    ) -> None:
        ops = getattr(self.limiter, "ops", None)
        if ops is not None and not counted:  # ratemw_config_reloads_total{result="error"}
            ops.stats.count_reload(False)
        with self._changed:
            self.reloads_failed += 1
            self.last_error = reason
            self.last_problems = loaded.problems if loaded is not None else problems
            self._changed.notify_all()
        log.error("ratemw: kept rules version %s; the new rules from %s were refused",
                  self.version[:12], origin)  # fmt: skip

    def set_transform(self, transform: Transform | None) -> None:
        """Use ``transform`` from now on, re-applying the rules in force through it.

        Raises :class:`ConfigError` (and keeps the rules in force) if they do not
        pass through it.
        """
        with self._apply_lock:
            previous, self.transform = self.transform, transform
            final = transform(self._base) if transform is not None else self._base
            try:
                self.limiter.update_rules(final)
            except ConfigError:
                self.transform = previous
                raise

    # -- waiting (tests, health checks) -----------------------------------------

    def wait_for(self, predicate: Callable[[LiveRules], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds or ``timeout`` seconds pass."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def wait_for_version(self, version: str, timeout: float) -> bool:
        """Block until rules ``version`` (a digest, as ``publish`` returns) are in force."""
        return self.wait_for(lambda live: live.version == version, timeout)

    async def await_version(self, version: str, timeout: float) -> bool:
        """:meth:`wait_for_version` without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.wait_for_version, version, timeout)

    # -- lifetime ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop watching and close the source; the limiter keeps the rules in force."""
        self._finalizer()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_CLOSE_JOIN_SECONDS)

    def __enter__(self) -> LiveRules:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LiveRules {self.source.origin} version={self.version[:12]}>"


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _shutdown(stop: threading.Event, source: Source) -> None:
    stop.set()
    try:
        source.close()
    except Exception:  # closing is best effort: the thread is a daemon
        log.debug("ratemw: closing %s failed", source.origin, exc_info=True)


def _watch(ref: weakref.ref[LiveRules], source: Source, stop: threading.Event) -> None:
    """The watch thread: it must outlive any error, and never keep ``LiveRules`` alive."""
    while not stop.is_set():
        try:
            for doc in source.watch(stop):
                live = ref()
                if live is None or stop.is_set():
                    return
                live.offer(doc)
                del live
            return
        except Exception:
            log.exception("ratemw: watching %s failed; restarting the watch", source.origin)
            stop.wait(1.0)
