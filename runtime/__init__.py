"""Process wiring: which pieces a process runs (broker, simulator, collectors, pipeline,
engine, alarms, UI) and their status. The pieces themselves live in their own packages."""
