"""dphi-claims: Experiment 7 (residual-stream Δφ PCA) as executable claims.

Data flow, one module per stage (each imports only those above it in this list):

    errors, options, config   run identity: the frozen RunConfig and the options that build it
    device                    resolve --device
    models, corpus            load the model (TransformerLens 4 bridge); load text, select tokens
    store                     on-disk cache keyed by the run config
    spectra                   PCA from float64 moments, K at thresholds, reconstruction
    capture, lowrank          hooks: record Δφ (or its statistics); project Δφ onto K components
    experiment                tables 7A-7E for one run config (cached)
    document                  the write-up's tables and claims as data
    snapshot, report, cli     syrupy snapshots of the tables; claims summary; `python -m lib tables`
"""
