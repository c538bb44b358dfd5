"""Run a paper ``TradingNode`` and stop it on request, whenever the request comes.

nautilus' own ``TradingNode.run()`` / ``stop()`` (1.221) are not safe to combine at arbitrary
moments, and a paper session is stopped from several places (``--duration``, the end of the feed
for ``--bars``, a divergence found by the state keeper, Ctrl-C):

* ``stop()`` schedules ``kernel.stop_async`` as a task and forgets it. If any step raises (an
  actor's ``on_stop``, for instance), the exception is lost with the task and the engines are never
  stopped: ``run()`` then waits for their queue tasks forever, idle.
* A stop that lands while ``kernel.start_async`` is still awaiting the clients or the portfolio runs
  interleaved with it: the trader may then start *after* the stop (its actors never see ``on_stop``),
  or the start waits for clients the stop has just disconnected (``timeout_connection``).
* If the start gives up (a timeout), ``run()`` keeps waiting for engines nobody stops.

``NodeRunner`` owns the run instead: it starts the kernel, then waits for a stop request (or the
duration), then stops, and only then returns. A request made before or during the start is kept and
served as soon as the start has returned; requests are idempotent and thread-safe. The stop itself
cannot be lost: an exception in a component's ``on_stop`` is recorded in ``errors``, the other
components are still stopped, and the engines are stopped whatever happened before, so their queue
tasks end. Whatever is still pending after ``grace_s`` is cancelled.
"""

import asyncio
import threading
import time

from lbml.nautilus.live import TradingNode


class NodeRunner:
    """Runs ``node`` until ``request_stop`` (or ``duration_s``); see the module docstring."""

    def __init__(self, node: TradingNode, grace_s: float = 10.0) -> None:
        self.node = node
        self.grace_s = grace_s
        self.errors: list[str] = []  # what went wrong while starting or stopping (the node stopped anyway)
        self.stop_reason: str | None = None
        self.started = False  # the trader ran
        self._lock = threading.Lock()
        self._event: asyncio.Event | None = None

    # -- requests ---------------------------------------------------------------------------------
    def request_stop(self, reason: str = "requested") -> None:
        """Ask the node to stop. Safe from any thread, at any time; only the first reason is kept."""
        with self._lock:
            if self.stop_reason is not None:
                return
            self.stop_reason = reason
            event = self._event
        if event is not None:
            try:
                self.node.get_event_loop().call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed: the run is over already
                pass

    # -- the run ----------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None) -> None:
        """Start the node, run it until a stop request or ``duration_s`` seconds, stop it, return.

        Ctrl-C (``KeyboardInterrupt``) stops the node gracefully, then propagates.
        """
        loop = self.node.get_event_loop()
        main = loop.create_task(self._main(duration_s), name="lbml-node-runner")
        try:
            loop.run_until_complete(main)
        except KeyboardInterrupt:
            self.request_stop("interrupted")
            loop.run_until_complete(main)
            raise

    async def _main(self, duration_s: float | None) -> None:
        with self._lock:
            self._event = asyncio.Event()
            if self.stop_reason is not None:
                self._event.set()
        loop = asyncio.get_running_loop()
        deadline = None if duration_s is None else loop.call_later(duration_s, self.request_stop, "duration")
        kernel = self.node.kernel
        try:
            await kernel.start_async()  # a request made meanwhile waits here: never interleaved with the start
            self.started = kernel.trader.is_running
            if self.started:
                await self._event.wait()
            elif self.stop_reason is None:
                self.errors.append("the node did not start (see the engine log)")
        finally:
            if deadline is not None:
                deadline.cancel()
            await self._stop()

    async def _stop(self) -> None:
        kernel = self.node.kernel
        try:
            await kernel.stop_async()
        except Exception as exc:  # noqa: BLE001 - recorded; the rest of the stop must still happen
            self.errors.append(f"stopping the node failed: {exc!r}")
            self._stop_remaining_components()
            try:
                await kernel.stop_async()  # the trader is no longer running: clients, engines, timers
            except Exception as again:  # noqa: BLE001
                self.errors.append(f"stopping the node failed again: {again!r}")
        for engine in (kernel.data_engine, kernel.risk_engine, kernel.exec_engine):
            if engine.is_running:
                engine.stop()
        await self._await_engine_tasks()

    def _stop_remaining_components(self) -> None:
        trader = self.node.kernel.trader
        for component in [*trader.actors(), *trader.strategies()]:
            if component.is_running:
                try:
                    component.stop()
                except Exception as exc:  # noqa: BLE001
                    self.errors.append(f"stopping {component.id} failed: {exc!r}")

    async def _await_engine_tasks(self) -> None:
        kernel = self.node.kernel
        tasks = [t for t in (
            kernel.data_engine.get_cmd_queue_task(), kernel.data_engine.get_req_queue_task(),
            kernel.data_engine.get_res_queue_task(), kernel.data_engine.get_data_queue_task(),
            kernel.risk_engine.get_cmd_queue_task(), kernel.risk_engine.get_evt_queue_task(),
            kernel.exec_engine.get_cmd_queue_task(), kernel.exec_engine.get_evt_queue_task(),
        ) if t is not None]
        if not tasks:
            return
        t0 = time.monotonic()
        _, pending = await asyncio.wait(tasks, timeout=self.grace_s)
        for task in pending:
            task.cancel()
        if pending:
            self.errors.append(f"{len(pending)} engine queue(s) still running {time.monotonic() - t0:.1f} s "
                               "after the stop were cancelled")
