"""Image preprocessing: enhancement operators, segmentation, alignment and their quality metrics."""
