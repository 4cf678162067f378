"""Security by default: outside demo mode a process refuses to start without TLS and
credentials for its brokers and a login for its dashboard. Pure checks, no I/O."""
from __future__ import annotations

from gwanje.config import Config, Secrets


def security_problems(config: Config, secrets: Secrets, roles: tuple[str, ...]) -> list[str]:
    """What is missing for a non-demo process with these roles (collect, serve, simulate)."""
    if config.system.demo:
        return []
    problems: list[str] = []
    if "collect" in roles or "simulate" in roles:
        url = config.system.mqtt.url or ""
        if not url.startswith("mqtts://"):
            problems.append("mqtt.url must use TLS (mqtts://...) outside demo mode (GWANJE_MQTT_URL)")
        if not (secrets.mqtt_username and secrets.mqtt_password):
            problems.append("MQTT credentials missing: set GWANJE_MQTT_USERNAME and GWANJE_MQTT_PASSWORD")
        used = {m.opcua_endpoint for m in config.machines() if m.opcua_endpoint}
        for ep in config.system.opcua.endpoints:
            if ep.name not in used:
                continue
            if ep.security_policy == "None" or ep.security_mode == "None":
                problems.append(f"opcua endpoint {ep.name}: security_policy Basic256Sha256 and security_mode "
                                f"Sign or SignAndEncrypt are required outside demo mode")
            elif not (ep.certificate and ep.private_key):
                problems.append(f"opcua endpoint {ep.name}: certificate and private_key are required")
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
