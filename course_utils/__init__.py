"""course_utils: the helper package of the "Seeing inside CNNs" course.

Import it as ``import course_utils as cu`` and call ``cu.setup(seed=0)`` first.
"""

from .setup import setup  # noqa: I001  (first: it quiets TensorFlow before anything imports it)
from .errors import CourseError
from . import (ascent, attribution, cam, checks, data, deconv, deconvnet, dream, features,
               gradients, lrp, metrics, models, occlusion, occlusion_panel, perturbation, plotting,
               transfer, widgets)
from .data import CLASS_NAMES, load_photo, load_photos, make_shapes
from .models import (feature_model, load_course_model, load_imagenet_model, logits_model)

__all__ = ["CLASS_NAMES", "CourseError", "ascent", "attribution", "cam", "checks", "data",
           "deconv", "deconvnet", "dream", "feature_model", "features", "gradients",
           "load_course_model", "load_imagenet_model", "load_photo", "load_photos", "logits_model",
           "lrp", "make_shapes", "metrics", "models", "occlusion", "occlusion_panel",
           "perturbation", "plotting", "setup", "transfer", "widgets"]
