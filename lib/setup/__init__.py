"""What a run is: the option table, the frozen RunConfig, devices, texts and token selection, model sources, provenance."""
