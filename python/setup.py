"""The pip build: setuptools (pyproject.toml) plus one step that generates
the asflow.v1 stubs from the repository's proto/ into the build directory,
so an installed package has them. PROTO_DIR overrides where proto/ is."""

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen_stubs  # noqa: E402


class BuildWithStubs(build_py):
    def run(self):
        proto_dir = Path(os.environ.get("PROTO_DIR", HERE.parent / "proto"))
        super().run()
        # After the package's own files: asflow/v1 is not in the source tree.
        gen_stubs.generate(proto_dir.resolve(), Path(self.build_lib).resolve())


setup(cmdclass={"build_py": BuildWithStubs})
