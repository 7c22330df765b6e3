"""dphi-claims: Experiment 7 (residual-stream Δφ PCA) as executable claims.

Data flow, one module per stage (each imports mainly those above it in this list):

    errors, options, config   run identity: the frozen RunConfig and the options that build it
    device                    resolve --device
    runs                      a session's runs: option lists x token windows; what they share
    kernels, models, corpus   attention kernel and its probe; load the model (TransformerLens 4
                              bridge); load text, select tokens and windows
    store                     on-disk cache keyed by the run config
    spectra                   PCA from float64 moments, K at thresholds, reconstruction
    distributed               torchrun: split passes among ranks, combine float64 sums exactly
    capture, lowrank          hooks: record Δφ (or its statistics); project a write onto K components
    causes                    the measurements behind the write-up's causal sentences
    experiment                tables 7A-7E (and the causes) for one run config (cached)
    followups                 follow-up experiments 7F-7H, on request
    document                  the write-up's tables and claims as data
    provenance, compare       where a result came from; a claims result against a baseline
    snapshot, sections, report, plots, cli   snapshots (per device); the report in the write-up's layout;
                              claims summary and report; figures; `python -m lib tables` and `compare`
"""
