"""The server fixtures start real servers that answer."""
import socket

import pytest
import requests


@pytest.mark.services
def test_mosquitto_listens(mosquitto):
    with socket.create_connection(("127.0.0.1", mosquitto.port), timeout=2):
        pass


@pytest.mark.services
def test_influxd_answers_ping_with_version(influxd):
    r = requests.get(influxd.url + "/ping", timeout=2)
    assert r.status_code == 204
    assert r.headers["X-Influxdb-Version"].startswith("1.")


@pytest.mark.services
def test_redis_server_answers_ping(redis_server):
    assert redis_server.client().ping() is True
