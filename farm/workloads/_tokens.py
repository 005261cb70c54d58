"""What the text classifiers share (``text_transformer``, ``sequence_rnn``): synthetic token sequences of
IMDB's set sizes, fed as int32 ids.
"""

from __future__ import annotations

from typing import Any

from farm.workloads import DataSpec

ACTIVATION_BYTES = 2
"""Bytes of one activation at the least: float16/bfloat16 under mixed precision (float32 otherwise, which the
lower bounds do not assume)."""


def token_sequences(seq_len: int, vocab_size: int, classes: int) -> DataSpec:
    """Sequences of ``seq_len`` token ids below ``vocab_size``; synthetic only (no real token dataset is
    shipped), 25,000 to train on and 25,000 to test, as IMDB has."""
    return DataSpec(
        sample_shape=(seq_len,),
        num_classes=classes,
        kind="tokens",
        vocab_size=vocab_size,
        train_size=25_000,
        test_size=25_000,
    )


def prepare_tokens(x: Any, y: Any) -> tuple[Any, Any]:
    """Token ids and labels as int32 (the embedding looks the ids up as they are)."""
    import numpy as np

    return np.asarray(x, dtype=np.int32), np.asarray(y, dtype=np.int32).reshape(-1)
