"""Statistics -> tables: the registry of every table, 7A-7E, the causes, the follow-ups 7F-7H, and `Run`
(one run config's tables, cached)."""
