"""benchfarm's light core: schemas, sweep expansion, workloads, queue, store and reports.

Importing anything under ``farm`` never imports TensorFlow, Keras, JAX or torch, so a laptop that only
submits and reports can install benchfarm without them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
