"""The suite's pytest plugin lives in lib/plugin.py (options, the session, fixtures, the summary)."""

pytest_plugins = ["lib.plugin"]
