"""The demonstration sites, simulated: CNC, forging, injection molding + assembly, press lines.

`Plant` (simulator.machines) is the pure, seeded model; `Simulator` (simulator.runner) runs it
on the wall clock, publishing MQTT machines to a broker and serving OPC UA machines from one
asyncua server per site. Standalone: `python -m simulator --config config --mqtt-url mqtt://...`.
"""
from simulator.machines import Plant
from simulator.runner import Simulator

__all__ = ["Plant", "Simulator"]
