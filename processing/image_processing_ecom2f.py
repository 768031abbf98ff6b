"""Image processor of EcoMask2Former: the stock Mask2Former (PIL backend) processor with strict, broad input handling.

Inputs: PIL images (any mode), NumPy arrays and torch tensors, each `(H, W)`, `(H, W, C)` or `(C, H, W)` with
C in {1, 3, 4}, or a 4-D batch `(N, H, W, C)` / `(N, C, H, W)`, or a list of those single images. Every image
becomes a 3-channel picture in the 8-bit scale before the stock resize / rescale / normalize / pad:

* grayscale (1 channel) is repeated to RGB; an alpha channel (RGBA, LA, PA) is dropped (what `PIL.convert("RGB")`
  does); other PIL modes (P, CMYK, YCbCr, ...) go through `convert("RGB")`;
* `uint8` is used as is; 16-bit data (`uint16` arrays or tensors, PIL "I;16*" and "I" images) is reduced to 8 bits
  (value / 257, rounded), the precision the model is trained with; other integer dtypes must hold 0..255;
* float images must hold values in [0, 1] (the torchvision convention). With `do_rescale=True` they are turned into
  the 8-bit scale (x 255, rounded), so `img_uint8` and `img_uint8 / 255` give the same `pixel_values`; with
  `do_rescale=False` they reach `normalize` unchanged. Integer images with `do_rescale=False` reach it in 0..255.

Anything else (2 channels, 5-D arrays, booleans, NaN, float values outside [0, 1], an empty list) raises a
`ValueError` / `TypeError` naming the image and the problem. `do_convert_rgb` has no effect (every image becomes
RGB); `input_data_format` settles ambiguous array layouts such as `(3, H, 3)`.

The batch is padded bottom/right to a common size and `pixel_mask` `(B, H, W)` marks the real pixels (1) and
the padding (0); `EcoMask2FormerForUniversalSegmentation` masks the padding out of the deformable attention and
of the gate. Binary mask labels are padded with 0 ("not this segment"), not with `ignore_index` as the stock
processor does, so padded pixels are plain background for the loss.

The three `post_process_*` methods are the stock ones run image by image on each image's own area: the padding
of a mixed-size batch is cropped away first (from the outputs' `mask_sizes`, or from `pixel_mask=` for outputs
without it), and without `target_sizes` each result has its image's unpadded processed size (`image_sizes`), not
the stock fixed 384 x 384. They also report, per image, the encoder depth the model used
(`outputs.encoder_layers_used`).
"""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_utils import BatchFeature
from transformers.image_transforms import get_size_with_aspect_ratio
from transformers.image_utils import ChannelDimension, SizeDict, get_image_size, get_image_size_for_max_height_width
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

CHANNEL_COUNTS = (1, 3, 4)  # grayscale, RGB, RGBA
PIL_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow opens 16-bit grayscale PNGs as "I;16" or "I"
UINT16_TO_UINT8 = 257  # 65535 / 255


def _shape_error(index: int, shape: tuple[int, ...], problem: str) -> ValueError:
    return ValueError(
        f"image {index} has shape {shape}: {problem}. Expected (H, W), (H, W, C) or (C, H, W) with C in "
        f"{CHANNEL_COUNTS} (grayscale, RGB, RGBA), or a 4-D batch (N, H, W, C) / (N, C, H, W)."
    )


def split_images(images) -> list:
    """Flatten the accepted input structures into a list of single images (PIL, array `(.., ..[, ..])`, tensor).

    Raises:
        ValueError: an empty list, an array with fewer than 2 or more than 4 dimensions.
        TypeError: an object that is not an image, or a nested list.
    """
    if isinstance(images, (str, os.PathLike)):
        images = PIL.Image.open(images)
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images)
    if not isinstance(images, (list, tuple)):
        images = [images]
    if len(images) == 0:
        raise ValueError("images is an empty list: pass at least one image")
    out = []
    for index, image in enumerate(images):
        if isinstance(image, (str, os.PathLike)):
            image = PIL.Image.open(image)
        if isinstance(image, (list, tuple)):
            raise TypeError(f"image {index} is a nested {type(image).__name__}: pass a flat list of images")
        if not isinstance(image, (PIL.Image.Image, np.ndarray, torch.Tensor)):
            raise TypeError(
                f"image {index} is a {type(image).__name__}; expected a PIL image, a NumPy array, a torch tensor "
                "or a path to an image file"
            )
        if not isinstance(image, PIL.Image.Image) and image.ndim not in (2, 3):
            raise _shape_error(index, tuple(image.shape), f"{image.ndim} dimensions is not an image")
        out.append(image)
    return out


def _channels_first(array: np.ndarray, *, index: int, channel_first_default: bool, input_data_format) -> np.ndarray:
    """`(H, W)`, `(H, W, C)` or `(C, H, W)` -> `(C, H, W)`, C in `CHANNEL_COUNTS`; ambiguous shapes follow the
    input's convention (tensors channels-first, arrays and PIL channels-last) unless `input_data_format` says."""
    shape = tuple(array.shape)
    if array.ndim == 2:
        array = array[None]
    elif input_data_format is not None:
        if ChannelDimension(input_data_format) == ChannelDimension.LAST:
            array = np.moveaxis(array, -1, 0)
    else:
        first, last = shape[0] in CHANNEL_COUNTS, shape[-1] in CHANNEL_COUNTS
        if not first and not last:
            channels = min(shape[0], shape[-1])  # the smaller end axis is the likely channel axis
            raise _shape_error(index, shape, f"{channels} channels is not supported")
        if last and not (first and channel_first_default):
            array = np.moveaxis(array, -1, 0)
    if array.shape[0] not in CHANNEL_COUNTS:
        raise _shape_error(index, shape, f"{array.shape[0]} channels is not supported")
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise _shape_error(index, shape, "the image is empty")
    return array


def _to_8bit_scale(array: np.ndarray, *, index: int, sixteen_bit: bool, do_rescale: bool) -> np.ndarray:
    """Pixel values -> `uint8` (integers; floats when `do_rescale`) or `float32` in [0, 1] (floats otherwise)."""
    numeric = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if array.dtype == np.bool_ or not numeric:
        raise ValueError(f"image {index} has dtype {array.dtype}; expected an integer or a float image")
    if array.dtype == np.uint8:
        return array
    low, high = (array.min().item(), array.max().item())
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"image {index} holds NaN or infinite values")
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"image {index} is a {array.dtype} image with values in [{low:g}, {high:g}], outside [0, 1] "
                f"(do_rescale={do_rescale}). Float images must hold values in [0, 1]; pass 0..255 data as uint8"
            )
        if not do_rescale:
            return array.astype(np.float32)
        return np.round(array.astype(np.float32) * 255.0).astype(np.uint8)
    if array.dtype == np.uint16 or sixteen_bit:
        if low < 0 or high > 65535:
            raise ValueError(f"image {index} is a 16-bit image with values in [{low}, {high}], outside [0, 65535]")
        return ((array.astype(np.int64) + UINT16_TO_UINT8 // 2) // UINT16_TO_UINT8).astype(np.uint8)
    if low < 0 or high > 255:
        raise ValueError(
            f"image {index} is a {array.dtype} image with values in [{low}, {high}]; integer images must be uint8 "
            "(0..255), uint16 (16-bit, 0..65535), or another integer dtype holding 0..255"
        )
    return array.astype(np.uint8)


def standardize_image(image, *, index: int, do_rescale: bool, input_data_format=None) -> np.ndarray:
    """One PIL image / array / tensor -> a channels-first RGB array `(3, H, W)` (see the module docstring).

    Returns:
        `uint8` `(3, H, W)`, or `float32` `(3, H, W)` in [0, 1] for a float input with `do_rescale=False`.
    """
    sixteen_bit = False
    if isinstance(image, PIL.Image.Image):
        if image.mode in PIL_16BIT_MODES:
            sixteen_bit = True
        elif image.mode not in ("RGB", "L", "F"):
            image = image.convert("RGB")
        array, input_data_format = np.asarray(image), ChannelDimension.LAST  # PIL arrays are (H, W[, C])
        channel_first_default = False
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype != torch.float64:
            tensor = tensor.float()  # bfloat16 has no NumPy twin; float32 holds float16 exactly
        array, channel_first_default = tensor.numpy(), True
    else:
        array, channel_first_default = np.asarray(image), False
    array = _channels_first(
        array, index=index, channel_first_default=channel_first_default, input_data_format=input_data_format
    )
    array = _to_8bit_scale(array, index=index, sixteen_bit=sixteen_bit, do_rescale=do_rescale)
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return np.ascontiguousarray(array[:3])  # RGBA: the alpha channel is dropped


def _checked_gate_beta(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"gate_beta must be a finite number >= 0 (quality fraction per encoder layer), got {value!r}")
    return float(value)


class EcoMask2FormerImageProcessor(Mask2FormerImageProcessorPil):
    r"""
    Image processor of [`EcoMask2FormerForUniversalSegmentation`]: the stock Mask2Former processor (PIL/NumPy
    backend, so torchvision is optional) with the input handling described in the module docstring, mask labels
    padded with 0, and post-processors that also return the encoder depth each image used.

    Every stock argument keeps its meaning (`size`, `size_divisor`, `do_rescale`, `image_mean`, `ignore_index`,
    `do_reduce_labels`, ...). Call it like the stock one:
    `processor(images, segmentation_maps=None, instance_id_to_semantic_id=None, return_tensors="pt")` returns
    `pixel_values` `(B, 3, H, W)`, `pixel_mask` `(B, H, W)` (1 = image, 0 = padding) and, with maps,
    `mask_labels` (per image `(n_i, H, W)`) and `class_labels` (per image `(n_i,)`).

    For `pipeline("image-segmentation", batch_size=N)` over images of different sizes, set the stock `pad_size`
    (e.g. `{"height": 256, "width": 256}` for `longest_edge=256`): the stock pipeline concatenates `pixel_values`
    without padding; the model crops each image's padding away again, so every image gets its `batch_size=1` result.

    gate_beta (`float`, *optional*):
        Trade-off of a `"utility"` gate (`EcoMask2FormerConfig.gate_objective`); when set, every output carries it as
        `gate_beta`, which the model's forward takes, so a pipeline built with this processor uses that beta.
    """

    def __init__(self, *args, gate_beta: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if gate_beta is not None:
            gate_beta = _checked_gate_beta(gate_beta)
        self.gate_beta = gate_beta

    def preprocess(self, *args, **kwargs) -> BatchFeature:
        """Stock preprocessing; with `gate_beta` set (here or at construction), the outputs also carry it as a Python
        float, so that `model(**inputs)` and `pipeline("image-segmentation")` run a utility gate at that trade-off."""
        gate_beta = kwargs.pop("gate_beta", self.gate_beta)
        features = super().preprocess(*args, **kwargs)
        if gate_beta is not None:
            features["gate_beta"] = _checked_gate_beta(gate_beta)
        return features

    def _preprocess_image_like_inputs(
        self, images, segmentation_maps, instance_id_to_semantic_id, do_convert_rgb, input_data_format, **kwargs
    ) -> BatchFeature:
        images = [
            standardize_image(
                image, index=index, do_rescale=bool(kwargs.get("do_rescale")), input_data_format=input_data_format
            )
            for index, image in enumerate(split_images(images))
        ]
        if segmentation_maps is not None:
            segmentation_maps = self._prepare_image_like_inputs(
                images=segmentation_maps, expected_ndims=2, do_convert_rgb=False,
                input_data_format=ChannelDimension.FIRST,
            )
        return self._preprocess(images, segmentation_maps, instance_id_to_semantic_id, **kwargs)

    def resize(self, image: np.ndarray, size: SizeDict, size_divisor: int = 0, resample=None, **kwargs) -> np.ndarray:
        """Stock resize, except that no side of the target size reaches 0.

        With `shortest_edge`/`longest_edge` (or `max_height`/`max_width`) an extreme aspect ratio (say 100000 x 2)
        rounds the short side to 0 and the stock resize fails with "Size must contain 'height' and 'width'"; here
        each side is at least 1 pixel (before `size_divisor` rounds it up), so the image keeps all its pixels on the
        long side and is stretched on the short one.
        """
        if size.shortest_edge and size.longest_edge:
            new_size = get_size_with_aspect_ratio(
                get_image_size(image, channel_dim=ChannelDimension.FIRST), size.shortest_edge, size.longest_edge
            )
        elif size.max_height and size.max_width:
            new_size = get_image_size_for_max_height_width(
                get_image_size(image, channel_dim=ChannelDimension.FIRST), size.max_height, size.max_width
            )
        else:
            return super().resize(image, size=size, size_divisor=size_divisor, resample=resample, **kwargs)
        height, width = (max(1, int(side)) for side in new_size)
        return super().resize(
            image, size=SizeDict(height=height, width=width), size_divisor=size_divisor, resample=resample, **kwargs
        )

    def pad(self, images, padded_size, segmentation_maps=None, fill=0, ignore_index=255):
        """Stock padding (bottom/right, `pixel_mask` 1 on the image), except that the binary mask labels passed as
        `segmentation_maps` are padded with 0 whatever `ignore_index` says."""
        return super().pad(images, padded_size, segmentation_maps=segmentation_maps, fill=fill, ignore_index=0)

    # ------------------------------------------------------------------------------------------------ post-processing

    @staticmethod
    def _encoder_layers(outputs, batch_size: int) -> list[int | None]:
        """Per image, the encoder depth used (`outputs.encoder_layers_used` `(B,)`); `None` for stock outputs."""
        used = getattr(outputs, "encoder_layers_used", None)
        if used is None:
            return [None] * batch_size
        return [int(depth) for depth in torch.as_tensor(used).reshape(-1).tolist()]

    @staticmethod
    def _per_image_outputs(outputs, pixel_mask: torch.Tensor | None) -> list[tuple[SimpleNamespace, tuple[int, int]]]:
        """Split `outputs` per image, each image's mask logits cropped to its own area, with its unpadded size.

        The areas come from the outputs' `mask_sizes` and `image_sizes` (ecom2f models), else from `pixel_mask`
        `(B, H, W)` (the processor's mask, padding at the bottom/right: the crop keeps the low-res logit cells that
        cover the image, rounding up to whole cells). Returns `[(outputs of one image, (height, width))]`.
        """
        class_logits, mask_logits = outputs.class_queries_logits, outputs.masks_queries_logits
        mask_sizes, image_sizes = getattr(outputs, "mask_sizes", None), getattr(outputs, "image_sizes", None)
        if mask_sizes is not None and image_sizes is not None:
            areas = [
                ((mask_h, mask_w), (height, width))
                for (mask_h, mask_w), (height, width) in zip(
                    torch.as_tensor(mask_sizes).tolist(), torch.as_tensor(image_sizes).tolist()
                )
            ]
        else:
            areas = EcoMask2FormerImageProcessor._areas_from_pixel_mask(pixel_mask, class_logits, mask_logits)
        return [
            (
                SimpleNamespace(
                    class_queries_logits=class_logits[i : i + 1],
                    masks_queries_logits=mask_logits[i : i + 1, :, :mask_h, :mask_w],
                ),
                image_size,
            )
            for i, ((mask_h, mask_w), image_size) in enumerate(areas)
        ]

    @staticmethod
    def _areas_from_pixel_mask(pixel_mask, class_logits, mask_logits) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Per image `((logit rows, logit columns), (height, width))` of its unpadded area in `pixel_mask`."""
        pixel_mask = torch.as_tensor(pixel_mask)
        if pixel_mask.dim() != 3 or pixel_mask.shape[0] != class_logits.shape[0]:
            raise ValueError(
                f"pixel_mask must have shape (batch_size={class_logits.shape[0]}, height, width), "
                f"got {tuple(pixel_mask.shape)}"
            )
        height, width = pixel_mask.shape[-2:]
        low_h, low_w = mask_logits.shape[-2:]
        areas = []
        for i in range(class_logits.shape[0]):
            valid = pixel_mask[i].bool()
            rows, cols = valid.any(dim=1).nonzero(), valid.any(dim=0).nonzero()
            if rows.numel() == 0:
                raise ValueError(f"pixel_mask of image {i} is all zeros: the image has no pixels")
            image_h, image_w = int(rows.max()) + 1, int(cols.max()) + 1
            areas.append(
                ((math.ceil(image_h * low_h / height), math.ceil(image_w * low_w / width)), (image_h, image_w))
            )
        return areas

    def _run_per_image(self, method, outputs, pixel_mask, target_sizes, **kwargs) -> list:
        """Call a stock post-processor image by image on its own area (padding cropped away first), resized to
        `target_sizes[i]`, else to the image's unpadded processed size. Outputs without `mask_sizes` and without a
        `pixel_mask` (stock models) go through the stock method on the whole batch."""
        if pixel_mask is None and getattr(outputs, "mask_sizes", None) is None:
            return method(outputs, target_sizes=target_sizes, **kwargs)
        results = []
        for i, (single, image_size) in enumerate(self._per_image_outputs(outputs, pixel_mask)):
            size = image_size if target_sizes is None else target_sizes[i]
            results.extend(method(single, target_sizes=[tuple(size)], **kwargs))
        return results

    def _run_and_tag(self, method, outputs, pixel_mask, target_sizes, **kwargs) -> list[dict]:
        """`_run_per_image`, then each image's result dict gets its `"encoder_layers_used"`."""
        results = self._run_per_image(method, outputs, pixel_mask, target_sizes, **kwargs)
        for result, depth in zip(results, self._encoder_layers(outputs, len(results))):
            result["encoder_layers_used"] = depth
        return results

    def post_process_semantic_segmentation(
        self,
        outputs,
        target_sizes: list[tuple[int, int]] | None = None,
        return_segmentation_scores: bool = False,
        *,
        return_encoder_layers: bool = False,
        pixel_mask: torch.Tensor | None = None,
    ) -> list:
        """Stock semantic post-processing: per image a class map `(H, W)` (`target_sizes[i]`, else the image's
        unpadded processed size; 384 x 384 only for stock outputs without `image_sizes` and without `pixel_mask`).

        Args:
            return_encoder_layers: return per image a dict `{"segmentation": (H, W) LongTensor,
                "encoder_layers_used": int | None}` (plus `"segmentation_scores"` `(num_labels, H, W)` with
                `return_segmentation_scores`) instead of the stock tensor / `SemanticSegmentationPostProcessorOutput`.
            pixel_mask: the processor's `pixel_mask` `(B, H, W)`; crops each image's padding away first.
        """
        results = self._run_per_image(
            super().post_process_semantic_segmentation, outputs, pixel_mask, target_sizes,
            return_segmentation_scores=return_segmentation_scores,
        )
        if not return_encoder_layers:
            return results
        depths = self._encoder_layers(outputs, len(results))
        dicts = []
        for result, depth in zip(results, depths):
            item = dict(result) if return_segmentation_scores else {"segmentation": result}
            item["encoder_layers_used"] = depth
            dicts.append(item)
        return dicts

    def post_process_instance_segmentation(
        self,
        outputs,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        target_sizes: list[tuple[int, int]] | None = None,
        return_coco_annotation: bool | None = False,
        return_binary_maps: bool | None = False,
        *,
        pixel_mask: torch.Tensor | None = None,
    ) -> list[dict]:
        """Stock instance post-processing; each image's dict also holds `"encoder_layers_used"` (`int`, or `None`
        for outputs without it). `pixel_mask` `(B, H, W)`: crop each image's padding away first."""
        return self._run_and_tag(
            super().post_process_instance_segmentation, outputs, pixel_mask, target_sizes,
            threshold=threshold, mask_threshold=mask_threshold,
            overlap_mask_area_threshold=overlap_mask_area_threshold,
            return_coco_annotation=return_coco_annotation, return_binary_maps=return_binary_maps,
        )

    def post_process_panoptic_segmentation(
        self,
        outputs,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        label_ids_to_fuse: set[int] | None = None,
        target_sizes: list[tuple[int, int]] | None = None,
        *,
        pixel_mask: torch.Tensor | None = None,
    ) -> list[dict]:
        """Stock panoptic post-processing; each image's dict also holds `"encoder_layers_used"` (`int`, or `None`
        for outputs without it). `pixel_mask` `(B, H, W)`: crop each image's padding away first."""
        return self._run_and_tag(
            super().post_process_panoptic_segmentation, outputs, pixel_mask, target_sizes,
            threshold=threshold, mask_threshold=mask_threshold,
            overlap_mask_area_threshold=overlap_mask_area_threshold, label_ids_to_fuse=label_ids_to_fuse,
        )


__all__ = ["EcoMask2FormerImageProcessor"]
