"""Running the work: the parallel map over files, the preprocessing cache, augmentation, thread settings."""
