"""A bare Keras script: the seed's CIFAR-10 MLP trained with a plain ``model.fit`` on numpy arrays.

It is the yardstick for the farm's own figures: no farm code runs here. Prints one JSON line with each
epoch's wall and process CPU time. Usage: python -m benchmarks.bare_fit SAMPLES EPOCHS BATCH [numpy|tfdata]

``tfdata`` (TensorFlow only) feeds ``fit`` the pipeline a user would write to avoid Keras' numpy adapter: shuffled
indices, batched, gathered from the arrays held as tensors, autotune off, one batch prefetched. It is the
yardstick for the farm's ``input_pipeline: farm``. The data, the model and the clock are in
``benchmarks/bare_keras.py``, which ``harness_ablation`` uses too, so both yardsticks train the same thing.
"""

import json
import sys
import time

from benchmarks.bare_keras import Clock, data, mlp, tf_data


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
