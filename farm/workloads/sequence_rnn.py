"""A recurrent text classifier: token embedding, ``layers`` stacked LSTM or GRU layers (every one but the last
returning its whole sequence), and a softmax classifier on the last layer's final state.

It trains on synthetic token sequences (IMDB-sized sets: 25,000 train and 25,000 test); throughput is in
sequences/s and, from the sequence length, tokens/s.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from farm.workloads import MAX_PARAMETERS, DataSpec, Workload, register
from farm.workloads._mlp import Optimizer, make_optimizer, training_state_bytes
from farm.workloads._tokens import ACTIVATION_BYTES, prepare_tokens, token_sequences

GATES: dict[str, int] = {"lstm": 4, "gru": 3}
"""Gates per cell: each is a Dense on the step's input and one on the previous state."""


class SequenceRNNParams(BaseModel):
    """One LSTM of 128 units on 100-token sequences, 2 classes, by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq_len: StrictInt = Field(default=100, ge=1, le=4096, description="Tokens in each sequence.")
    vocab_size: StrictInt = Field(default=20_000, ge=2, le=10_000_000, description="Token ids are 0..vocab_size-1.")
    embed_dim: StrictInt = Field(default=128, ge=1, le=65_536, description="Width of the token embedding.")
    units: StrictInt = Field(default=128, ge=1, le=65_536, description="Units of each recurrent layer.")
    layers: StrictInt = Field(default=1, ge=1, le=8, description="Stacked recurrent layers.")
    cell: Literal["lstm", "gru"] = Field(default="lstm", description="The recurrent cell.")
    classes: StrictInt = Field(default=2, ge=2, le=100_000, description="Classes the model tells apart.")
    optimizer: Optimizer = Field(default="adam", description="The optimizer, at Keras' defaults.")
    learning_rate: StrictFloat | None = Field(
        default=None, gt=0, le=10, description="The optimizer's learning rate; None keeps Keras' default."
    )

    @model_validator(mode="after")
    def _trainable(self) -> SequenceRNNParams:
        count = parameter_count(self)
        if count > MAX_PARAMETERS:
            raise ValueError(
                f"the model would have {count:,} parameters, more than the {MAX_PARAMETERS:,} any machine can train"
            )
        return self


def parameter_count(params: SequenceRNNParams) -> int:
    """Every parameter of :func:`build`'s model (all trainable), from the layer sizes.

    Each recurrent layer: gates × (input + units) × units weights, and biases: gates × units for the LSTM, twice
    that for Keras' GRU (``reset_after=True``, a bias on the input and one on the recurrent side). The first
    layer's input is the embedding, the others' the previous layer's units.
    """
    gates, u = GATES[params.cell], params.units
    biases = gates * u * (2 if params.cell == "gru" else 1)
    recurrent = 0
    for i in range(params.layers):
        inputs = params.embed_dim if i == 0 else u
        recurrent += gates * (inputs + u) * u + biases
    return params.vocab_size * params.embed_dim + recurrent + (u + 1) * params.classes


def memory_estimate(params: SequenceRNNParams, batch_size: int) -> int:
    """Bytes training needs at the least: float32 weights, gradients and optimizer state, plus the sequences the
    backward pass must keep (the embedding's and each recurrent layer's state at every step, at 2 bytes)."""
    state = training_state_bytes(parameter_count(params), params.optimizer)
    kept = params.seq_len * (params.embed_dim + params.layers * params.units)
    return state + kept * batch_size * ACTIVATION_BYTES


def data(params: SequenceRNNParams) -> DataSpec:
    return token_sequences(params.seq_len, params.vocab_size, params.classes)


def build(params: SequenceRNNParams, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    """Embedding → recurrent layers → Dense softmax (float32 under mixed precision, for a stable loss)."""
    import keras
    from keras import layers

    cell = layers.LSTM if params.cell == "lstm" else layers.GRU
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape, dtype="int32"),
            layers.Embedding(params.vocab_size, params.embed_dim),
            *(cell(params.units, return_sequences=i < params.layers - 1) for i in range(params.layers)),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="sequence_rnn",
    )
    return model, make_optimizer(params.optimizer, params.learning_rate), "sparse_categorical_crossentropy"


WORKLOAD = register(
    Workload(
        name="sequence_rnn",
        dataset=None,
        params_model=SequenceRNNParams,
        build_model=build,
        prepare=prepare_tokens,
        description="A stacked LSTM or GRU text classifier on token sequences",
        memory_estimate=memory_estimate,
        unit="sequences",
        data=data,
    )
)
