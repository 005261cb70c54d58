"""The multi-host suite: a lab of network namespaces (lab.py) and the tests that run the farm across it."""
