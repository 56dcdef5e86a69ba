"""asflow: AsFlow's Python API backed by asflowd.

    from asflow import flow          # the default Flow()

The generated gRPC stubs (asflow.v1) live in this package when installed;
in a build tree they are in build/python/asflow/v1, found through
PYTHONPATH=python:build/python (the path below joins the two halves).
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.2.0"

from asflow.flow import Flow  # noqa: E402
from asflow.throttle import Cooldown  # noqa: E402

flow = Flow()

__all__ = ["Cooldown", "Flow", "flow", "__version__"]
