"""Tables re-evaluated with some positions left out: the drop-k search, the weighted recomputation, the read recorder."""
