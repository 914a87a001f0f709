"""Data layer: records, dataset readers, the phantom, splits, the preprocessing cache and DataModules."""
