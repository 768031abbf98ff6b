"""The one error type raised for bad segmentation data, by the data adapters and by the metrics alike.

Every message starts with the image id, so a failure in a data set of 100k images points at the file to fix.
"""

from __future__ import annotations

__all__ = ["SegmentationDataError"]


class SegmentationDataError(ValueError):
    """Bad input for one image: wrong mask size, unknown category, overlapping segments, unreadable or missing file.

    Attributes:
        image_id: The id of the offending image (``"?"`` when the caller could not know it).
        problem: What is wrong, without the image id.
    """

    def __init__(self, *, image_id: object, problem: str) -> None:
        self.image_id = "?" if image_id is None else str(image_id)
        self.problem = problem
        super().__init__(f"image {self.image_id!r}: {problem}")

    def __reduce__(self):  # keep the keyword-only constructor picklable (datasets.map with num_proc pickles errors)
        return (_rebuild, (self.image_id, self.problem))


def _rebuild(image_id: str, problem: str) -> SegmentationDataError:
    return SegmentationDataError(image_id=image_id, problem=problem)
