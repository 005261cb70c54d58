"""The bare yardsticks' Keras parts: the seed's data, model and epoch clock, and the tf.data pipeline a user
would write. No farm code: ``bare_fit``, ``bare_workload`` and ``harness_ablation`` train the same thing."""

import time

import keras
import numpy as np


def data(samples):
    """Synthetic CIFAR-10-shaped images in [0, 1] and one-hot labels."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(samples, 32, 32, 3), dtype=np.uint8).astype("float32") / 255.0
    y = keras.utils.to_categorical(rng.integers(0, 10, size=samples), 10).astype("float32")
    return x, y


def mlp():
    """The seed's CIFAR-10 MLP, compiled as the farm compiles it."""
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(3000, activation="relu"),
            keras.layers.Dense(1000, activation="relu"),
            keras.layers.Dense(10, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


class Clock(keras.callbacks.Callback):
    """Each epoch's wall and process CPU seconds."""

    def __init__(self):
        super().__init__()
        self.times, self.cpu = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t0)
        self.cpu.append(time.process_time() - self.c0)


def tf_data(x, y, samples, batch):
    import tensorflow as tf

    xs, ys = tf.constant(x), tf.constant(y)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False
    return (
        tf.data.Dataset.range(samples)
        .shuffle(samples, seed=0, reshuffle_each_iteration=True)
        .batch(batch)
        .map(lambda i: (tf.gather(xs, i), tf.gather(ys, i)), num_parallel_calls=1)
        .with_options(options)
        .prefetch(1)
    )


def workload_data(workload, samples, params):
    """Synthetic inputs of the workload's shapes (images in [0, 1], or token ids) and integer labels."""
    rng = np.random.default_rng(0)
    if workload == "resnet50":
        size, classes = params.get("image_size", 224), params.get("classes", 1000)
        x = rng.integers(0, 256, size=(samples, size, size, 3), dtype=np.uint8).astype("float32") / 255.0
    elif workload == "text_transformer":
        seq, vocab, classes = params.get("seq_len", 128), params.get("vocab_size", 20000), params.get("classes", 2)
        x = rng.integers(1, vocab, size=(samples, seq), dtype=np.int32)
    else:
        raise SystemExit(f"unknown workload {workload}")
    return x, rng.integers(0, classes, size=samples).astype("int32")


def build_workload(workload, params):
    """The workload's model, compiled as the farm compiles it."""
    if workload == "resnet50":
        size, classes = params.get("image_size", 224), params.get("classes", 1000)
        model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=classes)
        optimizer = keras.optimizers.SGD()
    elif workload == "text_transformer":
        seq, vocab, width = params.get("seq_len", 128), params.get("vocab_size", 20000), params.get("width", 128)
        depth, heads, classes = params.get("depth", 2), params.get("heads", 4), params.get("classes", 2)
        ff = params.get("ff_width") or 4 * width
        tokens = keras.Input((seq,), dtype="int32")
        # Positions made from the token tensor, as the workload does, so the position embedding is a layer of the
        # model (trained and counted) rather than a constant computed once.
        positions = keras.ops.zeros_like(tokens) + keras.ops.arange(seq, dtype="int32")
        h = keras.layers.Embedding(vocab, width)(tokens) + keras.layers.Embedding(seq, width)(positions)
        for _ in range(depth):
            attended = keras.layers.MultiHeadAttention(heads, width // heads)(h, h)
            h = keras.layers.LayerNormalization()(h + attended)
            fed = keras.layers.Dense(width)(keras.layers.Dense(ff, activation="relu")(h))
            h = keras.layers.LayerNormalization()(h + fed)
        out = keras.layers.Dense(classes, activation="softmax")(keras.layers.GlobalAveragePooling1D()(h))
        model = keras.Model(tokens, out)
        optimizer = keras.optimizers.Adam()
    else:
        raise SystemExit(f"unknown workload {workload}")
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def run_workload(model, x, y, mode, epochs, batch):
    """``epochs`` epochs of ``fit`` (or passes of ``predict``), timed: the clock holds each one's wall and process
    CPU seconds."""
    clock = Clock()
    if mode == "train":
        model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[clock])
    else:
        for i in range(epochs):
            clock.on_epoch_begin(i)
            model.predict(x, batch_size=batch, verbose=0)
            clock.on_epoch_end(i)
    return clock
