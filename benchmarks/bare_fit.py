"""A bare Keras script: the seed's CIFAR-10 MLP trained with a plain ``model.fit`` on numpy arrays.

It is the yardstick for the farm's own figures: no farm code runs here. Prints one JSON line with each
epoch's wall time. Usage: python benchmarks/bare_fit.py SAMPLES EPOCHS BATCH [numpy|tfdata]

``tfdata`` (TensorFlow only) feeds ``fit`` the pipeline a user would write to avoid Keras' numpy adapter: shuffled
indices, batched, gathered from the arrays held as tensors, autotune off, one batch prefetched. It is the
yardstick for the farm's ``input_pipeline: farm``.
"""

import json
import sys
import time

import keras
import numpy as np

samples, epochs, batch = (int(a) for a in sys.argv[1:4])
pipeline = sys.argv[4] if len(sys.argv) > 4 else "numpy"
rng = np.random.default_rng(0)
x = rng.integers(0, 256, size=(samples, 32, 32, 3), dtype=np.uint8).astype("float32") / 255.0
y = keras.utils.to_categorical(rng.integers(0, 10, size=samples), 10).astype("float32")
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


class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        times.append(time.perf_counter() - self.t0)
        cpu.append(time.process_time() - self.c0)


times: list[float] = []
cpu: list[float] = []
t0 = time.perf_counter()
if pipeline == "tfdata":
    import tensorflow as tf

    xs, ys = tf.constant(x), tf.constant(y)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False
    data = (
        tf.data.Dataset.range(samples)
        .shuffle(samples, seed=0, reshuffle_each_iteration=True)
        .batch(batch)
        .map(lambda i: (tf.gather(xs, i), tf.gather(ys, i)), num_parallel_calls=1)
        .with_options(options)
        .prefetch(1)
    )
    model.fit(data, epochs=epochs, verbose=0, callbacks=[Clock()])
else:
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[Clock()])
print(json.dumps({"epoch_s": times, "epoch_cpu_s": cpu, "fit_s": time.perf_counter() - t0}))
