"""Example benchfarm workloads, installed as a plugin (see this directory's pyproject.toml)."""
