"""_header.py - the fields of a stream's 128-byte header (docs/FORMAT.md,
section 3), read in Python from the host copy of a stream's first bytes.

kvtc_cuda_decompress() validates the header and section table itself; the
binding reads the header only to size the outputs and the workspace before
that call, so it checks just enough to never size anything from a damaged
header: the magic and the header CRC.
"""
import struct
import zlib

from ._abi import STREAM_PREFIX_BYTES
from .errors import KvtcError

MAGIC = b"\x89KVTC\r\n\x1a"
_LAYOUT = struct.Struct("<8sHHIIIIIIBBBBfIQIIIIQQdQII12sI")
assert _LAYOUT.size == 128
_NAMES = ("magic", "version_major", "version_minor", "header_size", "flags", "n_layers", "n_kv_heads", "head_dim",
          "rope_dim", "rope_type", "dtype", "entropy_codec", "rope_removed", "rope_theta", "recompute_layers",
          "n_tokens", "n_sink", "n_window", "chunk_tokens", "n_chunks", "transform_fingerprint", "plan_fingerprint",
          "plan_ratio", "total_size", "n_sections", "table_crc", "reserved", "header_crc")

KVTC_ERR_BAD_MAGIC, KVTC_ERR_TRUNCATED, KVTC_ERR_CORRUPT = 4, 6, 7


def parse(prefix):
    """Header fields of a stream prefix (bytes-like, >= 128 bytes) as a dict.
    KvtcError: KVTC_ERR_TRUNCATED (short), KVTC_ERR_BAD_MAGIC, KVTC_ERR_CORRUPT
    (header CRC)."""
    b = bytes(prefix[:STREAM_PREFIX_BYTES])
    if len(b) < _LAYOUT.size:
        raise KvtcError(KVTC_ERR_TRUNCATED, "stream header", "fewer than 128 bytes")
    fields = dict(zip(_NAMES, _LAYOUT.unpack_from(b)))
    if fields["magic"] != MAGIC:
        raise KvtcError(KVTC_ERR_BAD_MAGIC, "stream header", "not a kvtc stream")
    if zlib.crc32(b[:124]) & 0xFFFFFFFF != fields["header_crc"]:
        raise KvtcError(KVTC_ERR_CORRUPT, "stream header", "header CRC mismatch")
    return fields
