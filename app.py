#!/usr/bin/env python3
"""Gwanje (관제) — plant-wide monitoring and control room.

  python app.py                 the embedded demo: broker, simulated sites, collectors, engine,
                                alarms, DuckDB under ./data and the control room on :8050
  python app.py check-config    validate config/*.yaml and exit (0 ok, 2 invalid)
  python app.py simulate        the machines plant.yaml marks simulated, against mqtt.url
  python app.py collect         collectors -> storage (InfluxDB or DuckDB), with engine and alarms
  python app.py serve           the control room over the configured store
  python app.py discover SOURCE --out NEWDIR [--seconds N]
                                find the devices of an OPC UA server (opc.tcp://...) or an MQTT
                                broker (mqtt://...) and write a config dir that collects them
  python app.py trust-server ENDPOINT [--fingerprint SHA256]
                                show an OPC UA server's certificate and trust it (docs/opcua.md)
  python app.py certs [--out DIR] [--days N] [--force]
                                create the collector's OPC UA application certificate and key
                                (default <data dir>/pki/own/cert.der + key.pem; docs/opcua.md)

Every subcommand reads --config DIR (GWANJE_CONFIG_DIR, default ./config) and --data-dir DIR
(GWANJE_DATA_DIR, default ./data); --host/--port (GWANJE_HOST/GWANJE_PORT) set the UI address.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gwanje.config import ConfigError, Secrets, load_config  # noqa: E402
from gwanje.security import security_problems  # noqa: E402

log = logging.getLogger("gwanje")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="Gwanje (관제) control room")
    p.add_argument("command", nargs="?", default="demo",
                   choices=["demo", "check-config", "simulate", "collect", "serve", "discover", "trust-server",
                            "certs"])
    p.add_argument("target", nargs="?", default=None,
                   help="discover: SOURCE (opc.tcp://host:port/path or mqtt://host:port); "
                        "trust-server: the endpoint name in system.yaml")
    p.add_argument("--out", default=None, help="discover: the config directory to write (must not exist); "
                                               "certs: where to write cert.der + key.pem (<data dir>/pki/own)")
    p.add_argument("--days", type=int, default=3650, help="certs: validity in days (3650)")
    p.add_argument("--force", action="store_true", help="certs: replace an existing certificate and key")
    p.add_argument("--seconds", type=float, default=10.0, help="discover on MQTT: how long to listen (10)")
    p.add_argument("--fingerprint", default=None,
                   help="trust-server: the SHA-256 fingerprint you expect; trusts without asking when it matches")
    p.add_argument("--config", default=os.environ.get("GWANJE_CONFIG_DIR") or str(ROOT / "config"),
                   help="config directory (GWANJE_CONFIG_DIR)")
    p.add_argument("--data-dir", default=os.environ.get("GWANJE_DATA_DIR") or str(ROOT / "data"),
                   help="data directory for the embedded store and the spool (GWANJE_DATA_DIR)")
    p.add_argument("--host", default=None, help="UI listen address (GWANJE_HOST)")
    p.add_argument("--port", type=int, default=None, help="UI port (GWANJE_PORT)")
    p.add_argument("--instance", default=None,
                   help="collect: which of system.yaml collect.instances this process is (GWANJE_INSTANCE)")
    p.add_argument("--health-port", type=int, default=int(os.environ.get("GWANJE_HEALTH_PORT", "0") or 0),
                   help="/healthz /readyz /metrics port for collect and simulate (GWANJE_HEALTH_PORT)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("GWANJE_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    env = dict(os.environ)
    if args.host:
        env["GWANJE_HOST"] = args.host
    if args.port:
        env["GWANJE_PORT"] = str(args.port)
    try:
        config = load_config(args.config, env=env)
    except ConfigError as e:
        print(f"configuration error:\n{e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        from alerts.service import check_config as alarm_config_problems

        bad = alarm_config_problems(config)
        if bad:
            print("configuration error:\n" + "\n".join(bad), file=sys.stderr)
            return 2
        n = sum(1 for _ in config.machines())
        print(f"config OK: {config.directory} — {len(config.plant.sites)} sites, "
              f"{sum(len(s.lines) for s in config.plant.sites)} lines, {n} machines "
              f"({len(config.simulated_machines())} simulated)")
        return 0

    if args.command in ("collect", "demo"):
        from gwanje.partition import for_instance, instance_names

        env_instance = os.environ.get("GWANJE_INSTANCE") or None
        if args.instance and env_instance and args.instance != env_instance:
            print(f"--instance {args.instance} and GWANJE_INSTANCE={env_instance} disagree", file=sys.stderr)
            return 2
        name = args.instance or env_instance
        names = instance_names(config)
        if args.command == "demo" and names:
            print(f"refusing to start the demo: system.yaml lists collect.instances {names}; the demo runs every "
                  f"machine in one process. Run `python app.py collect --instance NAME` per instance "
                  f"(docs/deploy.md, Scale-out)", file=sys.stderr)
            return 2
        if names and not name:
            print(f"refusing to collect: system.yaml lists collect.instances {names}; start each with "
                  f"`python app.py collect --instance NAME` (or GWANJE_INSTANCE=NAME)", file=sys.stderr)
            return 2
        if args.command == "collect" and name and names:
            try:
                config = for_instance(config, name)
            except ConfigError as e:
                print(f"configuration error:\n{e}", file=sys.stderr)
                return 2
        elif args.command == "collect" and args.instance:
            print(f"--instance {args.instance}: system.yaml has no collect.instances", file=sys.stderr)
            return 2
    if args.command == "discover":
        return _discover(args, config)
    if args.command == "trust-server":
        return _trust_server(args, config)
    if args.command == "certs":
        return _certs(args, config)
    if args.command == "simulate":
        from simulator.runner import nothing_to_simulate

        idle = nothing_to_simulate(config)
        if idle:  # a simulate process that plays nothing would look healthy and do nothing
            print(f"refusing to simulate: {idle}", file=sys.stderr)
            return 2
    secrets = Secrets.from_env()
    roles = {"demo": ("simulate", "collect", "serve")}.get(args.command, (args.command,))
    problems = security_problems(config, secrets, roles)
    from collectors.opcua_certs import security_file_problems

    unreadable = security_file_problems(config, Path(args.data_dir), roles)
    if unreadable:
        print("configuration error: security files:\n  " + "\n  ".join(unreadable), file=sys.stderr)
        return 2
    if problems:
        print("refusing to start outside demo mode:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 3

    from runtime.process import Runtime, wait_forever

    rt = Runtime(config, Path(args.data_dir), secrets)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # SIGTERM ends the UI by raising SIGINT in the main thread; a shell that starts us in the
    # background ignores SIGINT, so put Python's handler back explicitly
    signal.signal(signal.SIGINT, signal.default_int_handler)
    health = None
    try:
        if args.command == "demo":
            rt.start_broker_if_needed()
            rt.start_simulator()  # first, so the collectors find their servers listening
            rt.start_collect()
        elif args.command == "simulate":
            rt.start_simulator()
        elif args.command == "collect":
            rt.start_collect()
        if args.command in ("collect", "simulate") and args.health_port:
            from runtime.health import HealthServer

            health = HealthServer(rt.status, host=config.system.ui.host, port=args.health_port).start()
        if args.command in ("demo", "serve"):
            from dashboards.auth import AuthConfigError

            try:
                ui = rt.create_ui()
            except AuthConfigError as e:  # GWANJE_USERS / GWANJE_SECRET_KEY: the message names no secret
                print(f"refusing to start outside demo mode:\n  {e}", file=sys.stderr)
                return 3
            from runtime.health import add_routes

            add_routes(ui.server, rt.status)  # /healthz /readyz /metrics of this process
            host, port = config.system.ui.host, config.system.ui.port
            log.info("control room on http://%s:%d", host, port)
            threading.Thread(target=lambda: (stop.wait(), os.kill(os.getpid(), signal.SIGINT)), daemon=True).start()
            try:
                ui.run(host=host, port=port, debug=False)
            except KeyboardInterrupt:
                pass
        else:
            wait_forever(stop)
    finally:
        if health is not None:
            health.stop()
        rt.stop()
    return 0


def _discover(args: argparse.Namespace, config) -> int:
    from collectors.discover import discover, report
    from gwanje.discovery import DiscoveryError

    if not args.target or not args.out:
        print("usage: python app.py discover SOURCE --config DIR --out NEWDIR [--seconds N]", file=sys.stderr)
        return 2
    try:
        found, notes, added = discover(args.target, Path(args.config), Path(args.out), args.seconds,
                                       Secrets.from_env())
    except (DiscoveryError, ConfigError) as e:
        print(f"discover: {e}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError, TimeoutError) as e:
        print(f"discover: cannot reach {args.target}: {e!r}", file=sys.stderr)
        return 1
    print(report(found, notes, added, Path(args.out)))
    return 0


def _certs(args: argparse.Namespace, config) -> int:
    """Create the collector's OPC UA application certificate + key and say what to do next."""
    import socket

    from collectors.opcua_certs import CertificateExists, application_uri, create_certificate, default_paths
    from collectors.opcua_trust import fingerprint

    out = Path(args.out) if args.out else default_paths(Path(args.data_dir))[0].parent
    host = socket.gethostname()
    if args.days < 1:
        print("certs: --days must be at least 1", file=sys.stderr)
        return 2
    try:
        cert, key, der = create_certificate(out, host, days=args.days, force=args.force)
    except CertificateExists as e:
        print(f"certs: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"certs: cannot write into {out}: {e}", file=sys.stderr)
        return 1
    default = args.out is None
    print(f"certificate: {cert}\nprivate key: {key} (mode 0600)\n"
          f"application URI: {application_uri(host)}  DNS: {host}  valid {args.days} days  RSA 2048 / SHA-256\n"
          f"SHA-256 fingerprint: {fingerprint(der)}\n\nNext:\n"
          f"  1. trust this certificate on every OPC UA server (PLC) the collector talks to: import {cert}\n"
          f"     into its trust list (or accept it in its rejected list) and compare the fingerprint above\n"
          f"  2. in config/system.yaml, per endpoint: security_policy: Basic256Sha256, security_mode: SignAndEncrypt\n"
          + ("     (certificate/private_key may stay unset: they default to these files)\n" if default else
             f"     certificate: {cert}\n     private_key: {key}\n")
          + "  3. trust the server's certificate here: python app.py trust-server <endpoint>")
    return 0


def _trust_server(args: argparse.Namespace, config) -> int:
    """Show an endpoint's server certificate and, once the operator confirms, trust it."""
    import asyncio

    from collectors.opcua_trust import TrustList, describe, fetch_server_certificate, fingerprint, same_fingerprint

    ep = config.endpoint(args.target or "")
    if ep is None:
        names = [e.name for e in config.system.opcua.endpoints]
        print(f"trust-server: {args.target!r} is not an endpoint in system.yaml {names}", file=sys.stderr)
        return 2
    trust = TrustList(Path(args.data_dir) / config.system.opcua.trust_dir)
    try:
        der = asyncio.run(fetch_server_certificate(ep.url, ep.security_policy, ep.security_mode))
    except Exception as e:
        print(f"trust-server: cannot read the certificate of {ep.url}: {e!r}", file=sys.stderr)
        return 1
    fp = fingerprint(der)
    print(f"endpoint {ep.name} ({ep.url}) presents:\n  {describe(der)}")
    old = trust.trusted(ep.name)
    if old == der:
        print(f"already trusted ({trust.trusted_file(ep.name)})")
        return 0
    if old is not None:
        print(f"WARNING: this replaces the trusted certificate SHA-256 {fingerprint(old)}")
    if args.fingerprint is not None:
        if not same_fingerprint(args.fingerprint, fp):
            print(f"trust-server: the fingerprint does not match {args.fingerprint}; nothing trusted", file=sys.stderr)
            return 2
    else:
        if not sys.stdin.isatty():
            print("trust-server: compare the fingerprint with the server's administrator, then run again with "
                  "--fingerprint <SHA-256> (or from a terminal, to be asked)", file=sys.stderr)
            return 2
        if input("Trust this certificate? Type yes: ").strip().lower() != "yes":
            print("nothing trusted")
            return 2
    print(f"trusted: {trust.trust(ep.name, der)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
