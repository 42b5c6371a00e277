"""Images and hole masks: files (`image_files`), the checks every entry point shares (`checks`),
resizing to the prior and compositing (`geometry`) and figures (`figures`).

Images are float32 tensors [3, H, W] in [0, 1]; hole masks are float32 [H, W] with 1 = hole.
"""
from .checks import (
                     HOLE_THRESHOLD,
                     MIN_IMAGE_SIDE,
                     RANGE_TOLERANCE,
                     check_holds_values,
                     check_image_values,
                     check_mask_values,
                     hole_pixels,
                     to_signed_range,
                     to_unit_range,
)
from .figures import side_by_side
from .geometry import FIT_MODES, composite, fit_to_resolution, resize_image, resize_mask
from .image_files import (
                     ALPHA_FORMATS,
                     IMAGE_SUFFIXES,
                     MAX_IMAGE_PIXELS,
                     LoadedImage,
                     check_output_image_path,
                     image_size,
                     load_image,
                     load_mask,
                     read_image,
                     save_image,
                     save_mask,
)

__all__ = ["HOLE_THRESHOLD", "MIN_IMAGE_SIDE", "RANGE_TOLERANCE", "check_holds_values", "check_image_values",
           "check_mask_values", "hole_pixels", "to_signed_range", "to_unit_range", "side_by_side",
           "FIT_MODES", "composite", "fit_to_resolution",
           "resize_image", "resize_mask", "ALPHA_FORMATS", "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS",
           "LoadedImage", "check_output_image_path", "image_size", "load_image", "load_mask",
           "read_image", "save_image", "save_mask"]
