"""Capture what transformers logs (its library logger does not propagate to the root logger, so pytest's `caplog`
does not see it)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from transformers.utils import logging as hf_logging


class _ListHandler(logging.Handler):
    def __init__(self, records: list[str]) -> None:
        super().__init__(level=logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


@contextlib.contextmanager
def transformers_messages() -> Iterator[list[str]]:
    """Collect every message transformers logs at warning level or above inside the block."""
    logger = hf_logging.get_logger()  # the library root logger "transformers"
    records: list[str] = []
    handler = _ListHandler(records)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
