"""A bare Keras script for the standard workloads: ResNet-50 or the Transformer text classifier, trained with a
plain ``model.fit`` or served with a plain ``model.predict`` on numpy arrays.

It is the yardstick for the farm's figures on these workloads, so no farm code runs here: the models are built
from Keras alone (the Transformer written out again, layer by layer, from its description in the README; the
script prints its parameter count so the benchmark can check both sides built the same model). Prints one JSON
line with each epoch's (or, in inference, each ``predict`` pass's) wall and process CPU time.
``workload_ablation.py`` imports the data, the models and the timed loops from here, so both yardsticks run the
same thing.

    python benchmarks/bare_workload.py resnet50|text_transformer train|inference SAMPLES EPOCHS BATCH PARAMS_JSON
"""

import json
import sys

import keras
import numpy as np
from bare_fit import Clock  # the seed MLP's yardstick clocks epochs the same way


def data(workload, samples, params):
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


def build(workload, params):
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


def run(model, x, y, mode, epochs, batch):
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


def main():
    workload, mode = sys.argv[1], sys.argv[2]
    samples, epochs, batch = (int(a) for a in sys.argv[3:6])
    params = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    x, y = data(workload, samples, params)
    model = build(workload, params)
    clock = run(model, x, y, mode, epochs, batch)
    print(json.dumps({"epoch_s": clock.times, "epoch_cpu_s": clock.cpu, "param_count": int(model.count_params())}))


if __name__ == "__main__":
    main()
