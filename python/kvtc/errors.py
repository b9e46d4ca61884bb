"""errors.py - KvtcError: a kvtc_result as a Python exception."""
from ._abi import RESULT_NAMES


def result_name(code):
    """The C enum name of a kvtc_result value ("KVTC_ERR_CORRUPT"); codes this
    binding does not know (a newer library) get "KVTC_ERR_UNKNOWN_<n>"."""
    code = int(code)
    if 0 <= code < len(RESULT_NAMES):
        return RESULT_NAMES[code]
    return "KVTC_ERR_UNKNOWN_%d" % code


class KvtcError(RuntimeError):
    """A libkvtc call failed. .code is the kvtc_result value, .name its C enum
    name (e.g. "KVTC_ERR_CORRUPT"), .what the call or step that failed and
    .description the library's kvtc_result_string() (when it could be read)."""

    def __init__(self, code, what, description=None):
        self.code = int(code)
        self.name = result_name(code)
        self.what = what
        self.description = description
        text = "%s: %s" % (what, self.name)
        if description:
            text += " (%s)" % description
        RuntimeError.__init__(self, text)
