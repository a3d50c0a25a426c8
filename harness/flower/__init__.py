"""Run the harness on Flower (``harness run --engine flower``): same plugins, a real federated engine.

``server_app``/``client_app`` build the Flower apps; :func:`simulate` runs them on the Simulation Engine.
For the Deployment Engine (SuperLink + SuperNodes) see docs/flower.md and examples/flower/.
"""

from harness.flower.simulation import simulate

__all__ = ["simulate"]
