"""Build of alkey's C extension; the package metadata lives in pyproject.toml.

The extension links against libhiredis (0.14 or 1.x) and OpenSSL's libcrypto
(SHA-256), both found through pkg-config.  A missing library stops the build
with the Debian package to install: there is no pure-Python fallback.

ALKEY_DEBUG_BUILD=1 builds with -Werror, no optimisation, assertions on and
AddressSanitizer + UndefinedBehaviorSanitizer (see `make test-asan`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# gnu11 rather than c11: strict c11 hides POSIX (clock_gettime, nanosleep,
# ...) from every file where a libc header comes before Python.h, and
# hiredis.h includes <sys/time.h> itself.
WARNINGS = ["-Wall", "-Wextra", "-Wstrict-prototypes", "-std=gnu11"]
# -fno-wrapv undoes the -fwrapv of Python's CFLAGS so that UBSan reports
# signed overflow.
DEBUG_FLAGS = ["-Werror", "-O0", "-g3", "-fno-omit-frame-pointer", "-fno-wrapv"]
# -fno-sanitize-recover: undefined behaviour ends the process, as a memory
# error does, instead of a report that a test run could scroll past.
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]

HIREDIS_HINT = (
    "alkey needs libhiredis (0.14 or 1.x): install it with "
    "`apt-get install libhiredis-dev pkg-config` (Debian/Ubuntu)"
)
LIBCRYPTO_HINT = (
    "alkey needs OpenSSL's libcrypto (for SHA-256): install it with "
    "`apt-get install libssl-dev pkg-config` (Debian/Ubuntu)"
)


class BuildError(SystemExit):
    """Stops the build with a message for the person running it."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def pkg_config(*args: str) -> subprocess.CompletedProcess[str]:
    program = os.environ.get("PKG_CONFIG", "pkg-config")
    return subprocess.run(
        [program, *args], capture_output=True, text=True, check=False
    )


def require(package: str, hint: str) -> tuple[list[str], list[str]]:
    """Returns (cflags, libs) of a pkg-config package, or stops the build."""
    if shutil.which(os.environ.get("PKG_CONFIG", "pkg-config")) is None:
        raise BuildError(f"pkg-config not found. {hint}")
    if pkg_config("--exists", package).returncode != 0:
        raise BuildError(f"pkg-config cannot find {package}. {hint}")
    cflags = pkg_config("--cflags", package)
    libs = pkg_config("--libs", package)
    if cflags.returncode or libs.returncode:
        raise BuildError(
            f"pkg-config failed for {package}: "
            f"{(cflags.stderr or libs.stderr).strip()}. {hint}"
        )
    return shlex.split(cflags.stdout), shlex.split(libs.stdout)


def check_hiredis_version() -> None:
    version = pkg_config("--modversion", "hiredis").stdout.strip()
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return  # an odd version string: let the compiler judge
    if (major, minor) < (0, 14):
        raise BuildError(f"found libhiredis {version}. {HIREDIS_HINT}")


def add_flags(ext: Extension, cflags: list[str], libs: list[str]) -> None:
    """Splits pkg-config output into the Extension's own fields."""
    for flag in cflags:
        if flag.startswith("-I"):
            ext.include_dirs.append(flag[2:])
        elif flag.startswith("-D"):
            name, _, value = flag[2:].partition("=")
            ext.define_macros.append((name, value or None))
        else:
            ext.extra_compile_args.append(flag)
    for flag in libs:
        if flag.startswith("-l"):
            ext.libraries.append(flag[2:])
        elif flag.startswith("-L"):
            ext.library_dirs.append(flag[2:])
        else:
            ext.extra_link_args.append(flag)


class BuildExt(build_ext):
    """Resolves the native libraries when building, not when the script is
    read, so that an sdist or metadata can be made without them."""

    def build_extensions(self) -> None:
        hiredis = require("hiredis", HIREDIS_HINT)
        check_hiredis_version()
        libcrypto = require("libcrypto", LIBCRYPTO_HINT)
        have_ssl = pkg_config("--exists", "hiredis_ssl").returncode == 0
        hiredis_ssl = require("hiredis_ssl", HIREDIS_HINT) if have_ssl else None
        # TLS connections verify the host name with OpenSSL's libssl.
        libssl = require("libssl", LIBCRYPTO_HINT) if have_ssl else None
        debug = os.environ.get("ALKEY_DEBUG_BUILD") == "1"

        for ext in self.extensions:
            if not ext.sources:
                raise BuildError(f"{ext.name} has no C sources in csrc/")
            add_flags(ext, *hiredis)
            add_flags(ext, *libcrypto)
            if hiredis_ssl is not None:
                add_flags(ext, *hiredis_ssl)
                add_flags(ext, *libssl)
                ext.define_macros.append(("ALKEY_HAVE_HIREDIS_SSL", "1"))
            ext.extra_compile_args[:0] = WARNINGS
            if debug:
                ext.extra_compile_args += DEBUG_FLAGS + SANITIZE
                ext.extra_link_args += SANITIZE
                # Python's CFLAGS carry -DNDEBUG; -U comes after it.
                ext.undef_macros.append("NDEBUG")
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "alkey._native",
            sources=sorted(glob("csrc/*.c")),
            depends=sorted(glob("csrc/*.h")),
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
