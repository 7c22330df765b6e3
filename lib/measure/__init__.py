"""Model -> statistics: loading the model, attention kernels, the Δφ capture and its float64 moments, PCA
spectra, projected passes, torchrun helpers, the on-disk cache."""
