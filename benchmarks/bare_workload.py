"""A bare Keras script for the standard workloads: ResNet-50 or the Transformer text classifier, trained with a
plain ``model.fit`` or served with a plain ``model.predict`` on numpy arrays.

It is the yardstick for the farm's figures on these workloads, so no farm code runs here: the models are built
from Keras alone (the Transformer written out again, layer by layer, from its description in docs/user-guide.md; the
script prints its parameter count so the benchmark can check both sides built the same model). Prints one JSON
line with each epoch's (or, in inference, each ``predict`` pass's) wall and process CPU time.
The data, the models and the timed loops are in ``benchmarks/bare_keras.py``, which ``workload_ablation`` uses
too, so both yardsticks run the same thing.

    python -m benchmarks.bare_workload resnet50|text_transformer train|inference SAMPLES EPOCHS BATCH PARAMS_JSON
"""

import json
import sys

from benchmarks.bare_keras import build_workload, run_workload, workload_data


def main():
    workload, mode = sys.argv[1], sys.argv[2]
    samples, epochs, batch = (int(a) for a in sys.argv[3:6])
    params = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    x, y = workload_data(workload, samples, params)
    model = build_workload(workload, params)
    clock = run_workload(model, x, y, mode, epochs, batch)
    print(json.dumps({"epoch_s": clock.times, "epoch_cpu_s": clock.cpu, "param_count": int(model.count_params())}))


if __name__ == "__main__":
    main()
