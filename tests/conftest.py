"""Fixtures that start real servers on free ports in temp dirs (tests/fixtures/*)."""
import logging

pytest_plugins = [
    "tests.fixtures.mosquitto",
    "tests.fixtures.influxd",
    "tests.fixtures.opcua",
    "tests.fixtures.node_opcua",
    "tests.fixtures.browser",
    "tests.fixtures.redis_server",
]

logging.getLogger("asyncua").setLevel(logging.WARNING)
