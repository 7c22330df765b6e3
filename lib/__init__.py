"""dphi-claims: Experiment 7 (residual-stream Δφ PCA) as executable claims.

Data flow, one module per stage (each imports only those above it in this list):

    errors, options, config   run identity: the frozen RunConfig and the options that build it
    device                    resolve --device
    models, corpus            load the model (TransformerLens 4 bridge); load text, select tokens
    store                     on-disk cache keyed by the run config
    capture, lowrank          hooks: record Δφ; project Δφ onto K components during inference
    spectra                   PCA, K at thresholds, shared basis, reconstruction
    experiment                tables 7A-7E for one run config (cached)
    document                  the write-up's tables and claims as data
    report, cli               terminal summary; `python -m lib tables`
"""
