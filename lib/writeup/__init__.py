"""What a write-up says and how a sentence is decided: its tables and cells, its claims (data), the layer roles,
the predicates, the judge."""
