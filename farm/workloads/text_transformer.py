"""A Transformer encoder text classifier built from Keras layers alone: token and learned position embeddings,
``depth`` post-norm encoder blocks (multi-head self-attention and a ReLU feed-forward, each with a residual and
layer normalization), average pooling over the sequence and a softmax classifier.

It trains on synthetic token sequences (IMDB-sized sets by default: 25,000 train and 25,000 test); the farm
reports its throughput in sequences/s and, from the sequence length, tokens/s.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from farm.workloads import MAX_PARAMETERS, DataSpec, Workload, register
from farm.workloads._mlp import Optimizer, make_optimizer, training_state_bytes
from farm.workloads._tokens import ACTIVATION_BYTES, prepare_tokens, token_sequences


class TextTransformerParams(BaseModel):
    """A small encoder by default (2 blocks of width 128, 4 heads) on 128-token sequences, 2 classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq_len: StrictInt = Field(default=128, ge=2, le=4096, description="Tokens in each sequence.")
    vocab_size: StrictInt = Field(default=20_000, ge=2, le=10_000_000, description="Token ids are 0..vocab_size-1.")
    width: StrictInt = Field(default=128, ge=1, le=65_536, description="Model width; a multiple of heads.")
    depth: StrictInt = Field(default=2, ge=1, le=48, description="Encoder blocks.")
    heads: StrictInt = Field(default=4, ge=1, le=1024, description="Attention heads; each is width/heads wide.")
    ff_width: StrictInt | None = Field(
        default=None, ge=1, le=262_144, description="Width of the feed-forward's hidden layer; None means 4 × width."
    )
    classes: StrictInt = Field(default=2, ge=2, le=100_000, description="Classes the model tells apart.")
    optimizer: Optimizer = Field(default="adam", description="The optimizer, at Keras' defaults.")
    learning_rate: StrictFloat | None = Field(
        default=None, gt=0, le=10, description="The optimizer's learning rate; None keeps Keras' default."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TextTransformerParams:
        if self.width % self.heads:
            raise ValueError(
                f"width {self.width} is not a multiple of heads {self.heads}: each head is width/heads wide"
            )
        count = parameter_count(self)
        if count > MAX_PARAMETERS:
            raise ValueError(
                f"the model would have {count:,} parameters, more than the {MAX_PARAMETERS:,} any machine can train"
            )
        return self

    @property
    def ff(self) -> int:
        """The feed-forward's hidden width, with its default applied."""
        return self.ff_width if self.ff_width is not None else 4 * self.width


def parameter_count(params: TextTransformerParams) -> int:
    """Every parameter of :func:`build`'s model (all trainable), from the layer sizes.

    Embeddings: (vocab + seq_len) × width. Each block: the attention's query, key, value and output projections
    (width × width and a bias each, since heads × key_dim = width), two layer normalizations (a scale and an
    offset each) and the feed-forward (width × ff + ff, ff × width + width). The classifier: (width + 1) ×
    classes.
    """
    w, ff = params.width, params.ff
    block = 4 * (w * w + w) + 2 * 2 * w + (w * ff + ff) + (ff * w + w)
    return (params.vocab_size + params.seq_len) * w + params.depth * block + (w + 1) * params.classes


def memory_estimate(params: TextTransformerParams, batch_size: int) -> int:
    """Bytes training needs at the least: float32 weights, gradients and optimizer state, plus the activations
    the backward pass must keep, counted narrowly: per block the input of the attention's projections, the
    feed-forward's hidden layer (seq_len × width and seq_len × ff per sample) and the attention's scores
    (heads × seq_len² per sample: :func:`build` leaves Keras' flash attention off, so they are materialised, and
    at long sequences they dominate), at 2 bytes each."""
    state = training_state_bytes(parameter_count(params), params.optimizer)
    kept = params.depth * (params.seq_len * (params.width + params.ff) + params.heads * params.seq_len**2)
    return state + kept * batch_size * ACTIVATION_BYTES


def data(params: TextTransformerParams) -> DataSpec:
    return token_sequences(params.seq_len, params.vocab_size, params.classes)


def build(params: TextTransformerParams, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    """The functional model. Positions are ``arange(seq_len)`` made from the token tensor itself, so the position
    embedding is an ordinary layer of the graph (trained, counted, saved) rather than a captured constant."""
    import keras
    from keras import layers, ops

    (seq_len,) = input_shape
    width, heads = params.width, params.heads
    tokens = keras.Input(shape=(seq_len,), dtype="int32", name="tokens")
    positions = ops.zeros_like(tokens) + ops.arange(seq_len, dtype="int32")
    h = layers.Add(name="embed")(
        [
            layers.Embedding(params.vocab_size, width, name="token_embedding")(tokens),
            layers.Embedding(seq_len, width, name="position_embedding")(positions),
        ]
    )
    for i in range(params.depth):
        attended = layers.MultiHeadAttention(heads, width // heads, name=f"block{i}_attention")(h, h)
        h = layers.LayerNormalization(name=f"block{i}_norm1")(layers.Add()([h, attended]))
        hidden = layers.Dense(params.ff, activation="relu", name=f"block{i}_ff1")(h)
        fed = layers.Dense(width, name=f"block{i}_ff2")(hidden)
        h = layers.LayerNormalization(name=f"block{i}_norm2")(layers.Add()([h, fed]))
    pooled = layers.GlobalAveragePooling1D(name="pool")(h)
    # The classifier stays float32 under mixed precision so the loss is computed stably.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(pooled)
    model = keras.Model(tokens, outputs, name="text_transformer")
    return model, make_optimizer(params.optimizer, params.learning_rate), "sparse_categorical_crossentropy"


WORKLOAD = register(
    Workload(
        name="text_transformer",
        dataset=None,
        params_model=TextTransformerParams,
        build_model=build,
        prepare=prepare_tokens,
        description="A Transformer encoder text classifier on token sequences",
        memory_estimate=memory_estimate,
        unit="sequences",
        data=data,
    )
)
