"""Tables re-evaluated under position weights: drop sets (the drop-k search) and bootstrap replicates."""
