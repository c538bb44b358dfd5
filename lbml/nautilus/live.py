"""The paper/live node: ``TradingNode``, its configs, the data and execution client bases lbml
extends (a market-data client fed by lbml's sources, the sandbox execution client), and the
wiring of those clients and of lbml's venue modules into a built node.

A v2 port maps these to ``live.LiveNode`` / ``LiveNodeBuilder``, ``live.clients.MarketDataClient`` and
``adapters.sandbox.SandboxExecutionClientFactory``; v2's sandbox does not expose its simulated
exchange, so ``attach_venue_modules`` needs a different design there (docs/ENGINE.md §8).
"""

from functools import partial

from nautilus_trader.adapters.sandbox.config import SandboxExecutionClientConfig
from nautilus_trader.adapters.sandbox.execution import SandboxExecutionClient
from nautilus_trader.common.component import LiveClock
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.config import LiveExecEngineConfig, LiveRiskEngineConfig, LoggingConfig, TradingNodeConfig
from nautilus_trader.execution.engine import ExecutionEngine
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.live.factories import LiveExecClientFactory
from nautilus_trader.live.node import TradingNode

__all__ = ["InstrumentProvider", "LiveClock", "LiveExecClientFactory", "LiveExecEngineConfig", "LiveMarketDataClient",
           "LiveRiskEngineConfig", "LoggingConfig", "SandboxExecutionClient", "SandboxExecutionClientConfig",
           "TradingNode", "TradingNodeConfig", "apply_exec_events_synchronously", "attach_venue_modules",
           "register_data_client", "register_exec_client"]


def register_exec_client(kernel, client, venue) -> None:
    """Route the orders for ``venue`` to ``client`` in a built node."""
    kernel.exec_engine.register_client(client)
    kernel.exec_engine.register_venue_routing(client, venue)


def register_data_client(kernel, client, venue) -> None:
    """Make ``client`` the node's data client (the default one, and ``venue``'s)."""
    kernel.data_engine.register_client(client)
    kernel.data_engine.register_default_client(client)
    kernel.data_engine.register_venue_routing(client, venue)


def attach_venue_modules(kernel, exec_client: SandboxExecutionClient, modules) -> None:
    """Run lbml's venue ``SimulationModule``s on the sandbox client's simulated exchange, as the
    backtest venue runs them."""
    for module in modules:
        module.register_venue(exec_client.exchange)
        module.register_base(portfolio=kernel.portfolio, msgbus=kernel.msgbus, cache=kernel.cache, clock=kernel.clock)
        exec_client.exchange.modules.append(module)


def apply_exec_events_synchronously(kernel) -> None:
    """Have the node's execution engine apply each order event when it is emitted instead of
    queueing it (as the backtest engine does)."""
    engine = kernel.exec_engine
    kernel.msgbus.deregister("ExecEngine.process", engine.process)
    kernel.msgbus.register("ExecEngine.process", partial(ExecutionEngine.process, engine))
