"""A bare Keras script: the seed's CIFAR-10 MLP trained with a plain ``model.fit`` on numpy arrays.

It is the yardstick for the farm's own figures: no farm code runs here. Prints one JSON line with each
epoch's wall time. Usage: python benchmarks/bare_fit.py SAMPLES EPOCHS BATCH
"""

import json
import sys
import time

import keras
import numpy as np

samples, epochs, batch = (int(a) for a in sys.argv[1:4])
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
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        times.append(time.perf_counter() - self.t0)


times: list[float] = []
t0 = time.perf_counter()
model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[Clock()])
print(json.dumps({"epoch_s": times, "fit_s": time.perf_counter() - t0}))
