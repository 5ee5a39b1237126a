"""A local Pendo emulator: a real HTTP server that keeps the parts of Pendo's Integration API pendo_sync
uses, strictly (../shared/PENDO_API.md), so the demo, the tests and the benchmark need no Pendo.

contract.py holds Pendo's state and rules, limits.py its limits and injected faults, aggregation.py the
pipeline subset, api.py the endpoints, server.py the asyncio HTTP server.
"""

from pendo_sync.pendo.emulator.api import Emulator
from pendo_sync.pendo.emulator.contract import type_error
from pendo_sync.pendo.emulator.limits import EmulatorSettings, Fault
from pendo_sync.pendo.emulator.server import EmulatorServer, serve

__all__ = ["Emulator", "EmulatorServer", "EmulatorSettings", "Fault", "serve", "type_error"]
