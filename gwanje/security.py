"""Security by default: outside demo mode a process refuses to start without TLS and
credentials for its brokers and a login for its dashboard. Pure checks, no I/O."""
from __future__ import annotations

from gwanje.config import Config, Secrets


def security_problems(config: Config, secrets: Secrets, roles: tuple[str, ...]) -> list[str]:
    """What is missing for a non-demo process with these roles (collect, serve, simulate)."""
    if config.system.demo:
        return []
    problems: list[str] = []
    # serve talks to the broker too when it has one: the control bus (runtime/control.py)
    if "collect" in roles or "simulate" in roles or ("serve" in roles and config.system.mqtt.url):
        problems += mqtt_problems(config, secrets)
    if "collect" in roles or "simulate" in roles:
        problems += opcua_problems(config, secrets, client="collect" in roles)
    if "collect" in roles or "serve" in roles:
        # the control bus (gwanje/bus.py): without a real key anyone on the broker could
        # acknowledge or shelve alarms; demo mode uses bus.DEMO_KEY instead
        from gwanje.bus import MIN_KEY_LEN

        if len(secrets.command_key or "") < MIN_KEY_LEN:
            problems.append(f"control bus key missing or short: set GWANJE_COMMAND_KEY (at least {MIN_KEY_LEN} "
                            f"characters, the same for every collect and serve)")
    if "serve" in roles:
        if not secrets.ui_secret_key:
            problems.append("dashboard login needs GWANJE_SECRET_KEY (session signing key)")
    return problems


def mqtt_problems(config: Config, secrets: Secrets) -> list[str]:
    """MQTT outside demo mode: TLS with the broker's certificate verified (a CA file, or
    ca_file "system" for the OS trust store) and its name checked (no tls.insecure), and a
    credential: username + password from the environment, or a client certificate + key."""
    problems: list[str] = []
    url = config.system.mqtt.url or ""
    t = config.system.mqtt.tls
    if not url.startswith("mqtts://"):
        problems.append("mqtt.url must use TLS (mqtts://...) outside demo mode (GWANJE_MQTT_URL)")
    else:
        if t is None or not t.ca_file:
            problems.append("mqtt.tls.ca_file is required outside demo mode: the CA (PEM) that signed the broker's "
                            "certificate, or `ca_file: system` to verify against the OS trust store")
    if t is not None and t.insecure:
        problems.append("mqtt.tls.insecure is not allowed outside demo mode: the broker's name is always checked "
                        "(put the name the url uses into the broker certificate)")
    cert = bool(t and t.cert_file and t.key_file)
    if t is not None and bool(t.cert_file) != bool(t.key_file):
        problems.append("mqtt.tls.cert_file and mqtt.tls.key_file go together (client certificate and its key)")
    if secrets.mqtt_username and not secrets.mqtt_password:
        problems.append("GWANJE_MQTT_USERNAME is set but GWANJE_MQTT_PASSWORD is not")
    elif not (secrets.mqtt_username and secrets.mqtt_password) and not cert:
        problems.append("MQTT credentials missing: set GWANJE_MQTT_USERNAME and GWANJE_MQTT_PASSWORD, "
                        "or a client certificate (mqtt.tls.cert_file and key_file)")
    return problems


def opcua_problems(config: Config, secrets: Secrets, client: bool = True) -> list[str]:
    """OPC UA outside demo mode, for every endpoint an OPC UA machine uses: Basic256Sha256
    with Sign or SignAndEncrypt; for the collector (client) also a user: username + password from the environment or an X.509 user
    certificate (user_certificate + user_private_key). Our application certificate defaults
    to <data dir>/pki/own/ (`python app.py certs`); whether its files are readable is checked
    at start (collectors.opcua_certs.security_file_problems, I/O)."""
    problems: list[str] = []
    used = {m.opcua_endpoint for m in config.machines() if m.opcua_endpoint and m.definition.source == "opcua"}
    for ep in config.system.opcua.endpoints:
        if ep.name not in used:
            continue
        if ep.security_policy == "None" or ep.security_mode == "None":
            problems.append(f"opcua endpoint {ep.name}: security_policy Basic256Sha256 and security_mode "
                            f"Sign or SignAndEncrypt are required outside demo mode")
            continue
        if not client:
            continue
        user_cert = bool(ep.user_certificate and ep.user_private_key)
        if bool(ep.user_certificate) != bool(ep.user_private_key):
            problems.append(f"opcua endpoint {ep.name}: user_certificate and user_private_key go together")
        user, password = secrets.opcua_login(ep.name)
        if user and not password:
            problems.append(f"opcua endpoint {ep.name}: an OPC UA username is set but no password "
                            f"(GWANJE_OPCUA_PASSWORD)")
        elif not (user and password) and not user_cert:
            problems.append(f"opcua endpoint {ep.name}: a user login is required outside demo mode: "
                            f"GWANJE_OPCUA_USERNAME and GWANJE_OPCUA_PASSWORD (or per endpoint "
                            f"GWANJE_OPCUA_USERNAME_<ENDPOINT>), or user_certificate + user_private_key")
    return problems
