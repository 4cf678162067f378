"""`python -m simulator`: the simulated sites as a standalone process (until SIGINT/SIGTERM)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from gwanje.config import ConfigError, load_config
from simulator.runner import Simulator, nothing_to_simulate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    p.add_argument("--config", default=None, help="config directory (default GWANJE_CONFIG_DIR or ./config)")
    p.add_argument("--mqtt-url", default=None,
                   help="broker for the MQTT machines, mqtt://host:port (default: mqtt.url / GWANJE_MQTT_URL)")
    p.add_argument("--seed", type=int, default=None, help="default: simulator.seed in system.yaml")
    p.add_argument("--period", type=float, default=None, help="seconds between steps (default simulator.period_s)")
    p.add_argument("--data-dir", default=None, help="where generated OPC UA certificates go (GWANJE_DATA_DIR)")
    p.add_argument("--work-days-off", action="store_true",
                   help="keep producing on the shift calendar's days off (Sundays, holidays)")
    p.add_argument("--sparkplug-line", action="append", default=[], metavar="LINE",
                   help="publish this line's MQTT machines as Sparkplug B (line or site/line; repeatable)")
    p.add_argument("--lot-scale", type=float, default=None,
                   help="LOT quantities = products' lot_qty x this, e.g. 0.1 (default simulator.lot_scale)")
    args = p.parse_args(argv)
    if args.lot_scale is not None and not 0 < args.lot_scale <= 100:
        p.error(f"--lot-scale must be > 0 and <= 100, got {args.lot_scale}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # asyncua narrates building its address space line by line at INFO
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    idle = nothing_to_simulate(config)
    if idle:  # a simulator process with nothing to play would look healthy and do nothing
        print(f"nothing to simulate: {idle}", file=sys.stderr)
        return 2
    url = args.mqtt_url or config.system.mqtt.url
    if not url:
        logging.warning("no MQTT broker given (--mqtt-url, mqtt.url): serving the OPC UA machines only")
    sim = Simulator(config, url, seed=args.seed, period_s=args.period,
                    data_dir=Path(args.data_dir) if args.data_dir else None, work_days_off=args.work_days_off,
                    sparkplug_lines=args.sparkplug_line, lot_scale=args.lot_scale)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    sim.start()
    logging.info("seed %d, a step every %.3g s, LOT quantities x %g", sim.seed, sim.period_s, sim.plant.lot_scale)
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
