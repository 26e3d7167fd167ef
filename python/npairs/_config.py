"""npairs.show_config() (and ``python -m npairs``): the versions, the library
loaded, its backends and BLAS, and the CUDA build and devices, as one block of
text to paste into a bug report.

What the C API does not say (the BLAS linked, the CUDA architectures and
toolkit) comes from ``libnpairs-build.json``, which CMake writes beside the
library and installs with it. The rest is asked of the running process: the
library's file and the OpenBLAS in use (with the core whose kernels it chose)
through the loader (``dladdr``), the devices through the CUDA driver
(``libcuda.so.1``), never through a framework.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import os
import platform
import re
import sys

from . import _lib
from .errors import LibraryNotFoundError

BUILD_CONFIG_NAME = "libnpairs-build.json"

# CUdevice_attribute values of cuda.h.
_CU_COMPUTE_CAPABILITY_MAJOR = 75
_CU_COMPUTE_CAPABILITY_MINOR = 76


class _DlInfo(ctypes.Structure):
    """Dl_info of <dlfcn.h>."""

    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def loaded_file(function):
    """The real path of the loaded shared object that holds `function` (a
    ctypes function), or None where the loader cannot say (no dladdr)."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except (OSError, AttributeError):
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if not dladdr(ctypes.cast(function, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(os.fsdecode(info.dli_fname))


def _version_of(distribution):
    """An installed distribution's version, without importing it."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _library():
    """(lines, build configuration or None) of the loaded libnpairs."""
    try:
        lib = _lib.load()
    except LibraryNotFoundError as e:
        return [("library", f"not loaded: {e}")], None
    path = loaded_file(lib.npairs_version_number) or _lib.library_path()
    lines = [("library", f"{path} (libnpairs {lib.npairs_version_string().decode()}; {_lib.library_origin()})")]
    try:
        with open(os.path.join(os.path.dirname(path), BUILD_CONFIG_NAME), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        config = None
        lines.append(("build", f"unknown: no readable {BUILD_CONFIG_NAME} beside the library ({e})"))
    else:
        build = config["build_type"] or "no build type"
        lines.append(("build", f"{build}, {config['cxx_compiler']}, OpenMP {config['openmp'] or '?'}"))
    cuda_usable = bool(lib.npairs_backend_available(_lib.BACKEND_CUDA))
    if config is None:
        cuda = "usable" if cuda_usable else "not usable now"
    elif not config["cuda_backend"]:
        cuda = "not built (a CPU-only library)"
    else:
        cuda = "usable" if cuda_usable else "built, not usable now (no CUDA device or driver)"
    lines.append(("backends", f"cpu: usable; cuda: {cuda}"))
    lines.append(("BLAS", _blas(config)))
    if config is not None and config["cuda_backend"]:
        architectures = ", ".join(config["cuda_architectures"])
        lines.append(("CUDA build", f"toolkit {config['cuda_toolkit']}, architectures {architectures}"))
    return lines, config


# The OpenBLAS builds libnpairs links (cmake/NpairsBlas.cmake), as (soname, symbol prefix): PyPI's
# scipy-openblas32 (the wheel's), the system's.
_OPENBLAS_BUILDS = (("libscipy_openblas.so", "scipy_"), ("libopenblas.so.0", ""))


def _blas(config):
    """The OpenBLAS the process runs with (its version and build, the core whose kernels it chose, its
    threading and file), else what the library was linked with."""
    linked = ", ".join(config["blas_libraries"]) if config else "unknown"
    builds = list(_OPENBLAS_BUILDS)
    if "scipy_openblas" not in linked:
        builds.reverse()
    for soname, prefix in builds:
        try:
            openblas = ctypes.CDLL(soname, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            get_config, get_corename = (getattr(openblas, f"{prefix}openblas_get_{what}")
                                        for what in ("config", "corename"))
        except (OSError, AttributeError):
            continue
        get_config.restype = get_corename.restype = ctypes.c_char_p
        parallel = getattr(openblas, f"{prefix}openblas_get_parallel")()
        threads = getattr(openblas, f"{prefix}openblas_get_num_threads")()
        threading = {0: "sequential", 1: "pthreads", 2: "OpenMP"}.get(parallel, "?")
        return (f"{get_config().decode().strip()}; core {get_corename().decode().strip()}, {threading} threading, "
                f"{threads} threads ({loaded_file(get_config) or soname})")
    return f"linked with {linked}"


def _runs_on(architectures, major, minor):
    """What of the built CUDA architectures (CMake's forms: 90, 90-real, 80-virtual, 90a) a device of
    compute capability major.minor runs, or None when the list is not of those forms (native, all)."""
    capability = major * 10 + minor
    binary, ptx = [], []
    for arch in architectures:
        m = re.fullmatch(r"(\d+)([af]?)(?:-(real|virtual))?", arch)
        if not m:
            return None
        number, specific, kind = int(m[1]), m[2], m[3]
        # Binary code runs on the same major version at an equal or higher minor one ("a": that one
        # only; "f": the family); PTX is compiled by the driver for any device at least as new.
        binary_runs = number // 10 == major and (number == capability or (specific != "a" and number < capability))
        if kind != "virtual" and binary_runs:
            binary.append((number, f"sm_{number}{specific}"))
        if kind != "real" and not specific and number <= capability:
            ptx.append((number, f"compute_{number}"))
    if binary:
        return f"runs {max(binary)[1]} code"
    if ptx:
        return f"runs {max(ptx)[1]} PTX, compiled by the driver"
    return "no code built for it: the CUDA backend cannot run there"


def _cuda_devices(config):
    """Lines on the CUDA driver and each device, asked of libcuda.so.1."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        return [("CUDA driver", f"not found ({e})")]
    status = cuda.cuInit(0)
    version, count = ctypes.c_int(0), ctypes.c_int(0)
    cuda.cuDriverGetVersion(ctypes.byref(version))
    lines = [("CUDA driver", f"{version.value // 1000}.{version.value % 1000 // 10}")]
    if status != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        lines.append(("CUDA devices", f"none (cuInit: CUDA error {status})"))
        return lines
    if count.value == 0:
        lines.append(("CUDA devices", "none"))
    for i in range(count.value):
        device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        name, memory = ctypes.create_string_buffer(256), ctypes.c_size_t(0)
        cuda.cuDeviceGet(ctypes.byref(device), i)
        cuda.cuDeviceGetName(name, len(name), device)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_COMPUTE_CAPABILITY_MAJOR, device)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_COMPUTE_CAPABILITY_MINOR, device)
        cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device)
        text = f"{name.value.decode()}, compute capability {major.value}.{minor.value}, {memory.value / 2**30:.1f} GiB"
        if config is not None and config["cuda_backend"]:
            runs = _runs_on(config["cuda_architectures"], major.value, minor.value)
            if runs:
                text += f"; {runs}"
        lines.append((f"CUDA device {i}", text))
    return lines


def show_config(file=None):
    """Prints the package's and library's versions, the library's path, the
    backends usable, the BLAS, the CUDA build and the CUDA devices to `file`
    (default: sys.stdout): what a bug report needs.

    Loads the library and initialises the CUDA driver where there is one.
    """
    from . import __version__

    lines = [("npairs", f"{__version__} ({os.path.dirname(os.path.abspath(__file__))})")]
    library_lines, config = _library()
    lines += library_lines
    lines += _cuda_devices(config)
    others = ", ".join(f"{d} {_version_of(d) or 'not installed'}" for d in ("numpy", "torch"))
    lines.append(("python", f"{platform.python_version()} ({sys.executable}); {others}"))
    lines.append(("platform", platform.platform()))
    width = max(len(key) for key, _ in lines) + 2
    for key, value in lines:
        print(f"{key + ':':<{width}}{value}", file=file or sys.stdout)
