"""Alarms and notifications: rules (alarms.yaml) -> ISA-18.2 lifecycle -> notifier.

lifecycle.py and rules.py and health.py are pure; notify.py talks to the network through
Apprise in worker threads; service.py wires them to the pipeline and the store."""
