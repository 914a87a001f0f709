"""Plane routing: a small CNN that names the brain plane of an ultrasound frame, or says it is unsupported.

`PlaneClassifier.load(path_or_uri).predict(gray_images)` -> [(plane, confidence)]; `fbad train-planes`
trains one (`fbad.commands.train_planes`). Pieces: `inputs` (frame -> network input, pure), `net` (plain
nn.Module), `module` (Lightning wrapper), `data` (labelled records, cached inputs), `classifier`
(weights file and inference).
"""

from fbad.planes.classifier import UNSUPPORTED, WEIGHTS_FORMAT, WEIGHTS_NAME, PlaneClassifier, load_weights
from fbad.planes.inputs import prepare_frame, prepare_input
from fbad.planes.net import PlaneNet

__all__ = ["UNSUPPORTED", "WEIGHTS_FORMAT", "WEIGHTS_NAME", "PlaneClassifier", "PlaneNet", "load_weights",
           "prepare_frame", "prepare_input"]
