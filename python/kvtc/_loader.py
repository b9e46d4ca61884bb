"""_loader.py - finds and opens libkvtc.so.0 and libkvtc_cuda.so.0.

Search order for each library (the first that opens wins):
  1. the environment variable (KVTC_LIB / KVTC_CUDA_LIB): a path, used alone
     (an explicit choice that fails is an error, not a reason to guess);
  2. next to this package (a wheel or `make install` that copies the .so
     into python/kvtc/), then, for the CUDA library, the folder the CPU
     library was opened from;
  3. a build tree of the source checkout this package sits in
     (<repo>/build*/), so `python3 python/...` works after scripts/build.sh;
  4. ctypes.util.find_library() and then the system loader with the
     versioned name (libkvtc.so.0), then the unversioned one.
"""
import ctypes
import ctypes.util
import glob
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))


def candidates(base, env_var, extra_dirs=()):
    """Paths or loader names to try, in order, for library `base` ("kvtc")."""
    env = os.environ.get(env_var)
    if env:
        return [env]
    names = ["lib%s.so.0" % base, "lib%s.so" % base]
    out = []
    for d in [_HERE] + [d for d in extra_dirs if d]:
        out += [os.path.join(d, n) for n in names]
    for d in sorted(glob.glob(os.path.join(_REPO, "build*"))):
        out += [os.path.join(d, n) for n in names]
    out = [p for p in out if os.path.exists(p)]
    found = ctypes.util.find_library(base)
    if found:
        out.append(found)
    return out + names


def open_library(base, env_var, extra_dirs=(), mode=ctypes.RTLD_GLOBAL):
    """Open the first candidate that loads; OSError listing what was tried.
    RTLD_GLOBAL so that libkvtc_cuda.so.0, which needs libkvtc.so.0, finds
    the copy already loaded (the loader matches it by soname)."""
    tried = []
    for cand in candidates(base, env_var, extra_dirs):
        try:
            return ctypes.CDLL(cand, mode=mode), cand
        except OSError as e:
            tried.append("%s (%s)" % (cand, e))
            if os.environ.get(env_var):
                break
    raise OSError("lib%s not found; set %s to its path. Tried: %s" % (base, env_var, "; ".join(tried)))
