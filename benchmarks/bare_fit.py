"""A bare Keras script: the seed's CIFAR-10 MLP trained with a plain ``model.fit`` on numpy arrays.

It is the yardstick for the farm's own figures: no farm code runs here. Prints one JSON line with each
epoch's wall and process CPU time. Usage: python benchmarks/bare_fit.py SAMPLES EPOCHS BATCH [numpy|tfdata]

``tfdata`` (TensorFlow only) feeds ``fit`` the pipeline a user would write to avoid Keras' numpy adapter: shuffled
indices, batched, gathered from the arrays held as tensors, autotune off, one batch prefetched. It is the
yardstick for the farm's ``input_pipeline: farm``. ``harness_ablation.py`` imports the data, the model and the
clock from here, so both yardsticks train the same thing.
"""

import json
import sys
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


def main():
    samples, epochs, batch = (int(a) for a in sys.argv[1:4])
    pipeline = sys.argv[4] if len(sys.argv) > 4 else "numpy"
    x, y = data(samples)
    model = mlp()
    clock = Clock()
    t0 = time.perf_counter()
    if pipeline == "tfdata":
        model.fit(tf_data(x, y, samples, batch), epochs=epochs, verbose=0, callbacks=[clock])
    else:
        model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[clock])
    print(json.dumps({"epoch_s": clock.times, "epoch_cpu_s": clock.cpu, "fit_s": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
