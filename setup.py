"""Builds the oracle's C kernel (src/shrinknet/oracle/_fused.c) when the package is installed.

Everything else about the package is in pyproject.toml. The kernel is built several times from the
one source, because the wheel or the editable tree may be used on another CPU than the one that
built it: x86-64 builds for AVX-512 (the x86-64-v4 level) and for AVX2 with FMA, which kernel.py
loads where the CPU has them (the kernel's vectors are 256 bits wide either way; the AVX-512 level
gives its compiled loops more instructions and registers), and a portable build without -m flags,
which it loads everywhere else (and the only build off x86-64). Each is
tried with -fopenmp first and without it where the compiler lacks OpenMP (the library then works
on one thread and says so). The libraries are plain shared objects that kernel.py opens with
ctypes: they use no Python symbols, and are named like extension modules only so that setuptools
puts them in the package's directory, for wheels and editable installs alike.

A kernel that does not build (no C compiler, a compiler that rejects the flags, another platform)
does not fail the install: the extensions are optional, and the package then runs on its PyTorch
path, with one warning at run time.
"""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

SOURCE = "src/shrinknet/oracle/_fused.c"
# the flags of each build; kernel.py looks for the files _fused_<variant><extension suffix>
FLAGS = {"avx512": ["-O3", "-march=x86-64-v4"], "avx2": ["-O3", "-mavx2", "-mfma"], "portable": ["-O3"]}
X86_64 = platform.machine().lower() in ("x86_64", "amd64", "x64")


class BuildKernel(build_ext):
    """Compiles each kernel build with the C compiler and the flags above, and only those: not the
    flags Python itself was built with (-g, -fwrapv, its own -O level), so that the library is the
    same whichever Python installs it."""

    def build_extension(self, ext):
        cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        out = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        flags = FLAGS[ext.name.rsplit("_", 1)[1]] + ["-shared", "-fPIC"]
        errors = []
        for openmp in (["-fopenmp"], []):
            command = [*cc, *flags, *openmp, *ext.sources, "-o", out, "-lm"]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.SubprocessError) as e:
                errors.append(f"{shlex.join(command)}: {e}")
                continue
            if done.returncode == 0:
                print(f"built {ext.name} with {shlex.join(command)}")
                return
            errors.append(f"{shlex.join(command)}: exit {done.returncode}\n{done.stderr[-2000:]}")
        # an optional extension's CompileError is reported and skipped by setuptools
        raise CompileError(f"the oracle's C kernel ({ext.name}) did not build; shrinknet will use its "
                           "PyTorch path:\n" + "\n".join(errors))


setup(
    ext_modules=[Extension(f"shrinknet.oracle._fused_{variant}", sources=[SOURCE], optional=True)
                 for variant in (("avx512", "avx2", "portable") if X86_64 else ("portable",))],
    cmdclass={"build_ext": BuildKernel},
)
