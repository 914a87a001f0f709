"""Head segmentation: one ellipse (outer skull border) plus head, skull and brain masks per image.

`get_segmenter(cfg)` builds any method of `conf/segmentation/` (registry.py); `SegmentationResult` is what
they return (result.py). Methods: classical.py (`none`, `seed`), ellipse.py (`ellipse`), learned/ (`learned`),
truth.py (`ground_truth`); geometry.py and metrics.py are shared by all of them.
"""
