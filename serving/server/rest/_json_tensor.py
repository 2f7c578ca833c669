"""TF Serving's REST JSON encoding: request bodies to numpy tensors and tensors back to JSON bytes.

This mirrors `tensorflow_serving/util/json_tensor.cc` (spec §1.6-§1.9, §2) closely enough that a
client cannot tell the two apart: the same accepted documents (rapidjson with NaN/Infinity,
trailing bytes ignored, any nesting depth), the same error texts and the same response bytes
(rapidjson PrettyWriter layout, six-significant-digit floats).

Parsed JSON is plain Python data: dict, list, str, bool, None, and numbers where `int` means
"rapidjson stored an integer" and `float` means "rapidjson stored a double" (this distinction
drives the dtype rules, e.g. DT_INT32 rejects `1.0`). Strings keep undecodable bytes as
surrogate escapes, because rapidjson does not validate UTF-8.

No aiohttp here: the REST front end (`_rest.py`) only moves bytes.
"""

from __future__ import annotations

import array
import base64
import binascii
import gc
import math
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from tfstack.serving._errors import Code, StatusError

__all__ = [
    "ROW",
    "COLUMNAR",
    "parse_json",
    "debug_string",
    "predict_inputs_from_json",
    "signature_name_from_json",
    "predict_response_json",
    "examples_from_json",
    "classify_response_json",
    "regress_response_json",
    "error_json",
    "format_float",
    "dtype_name",
]

ROW = "row"
COLUMNAR = "columnar"

_MAX_DEBUG_BYTES = 256
_F32 = struct.Struct("f")
# TensorShape's own limit; numpy cannot go that far, so deeper tensors fail the way TF would
# fail to build them from the request proto.
_MAX_NUMPY_RANK = 64

# tensorflow.DataType enum values -> (DataTypeString, numpy dtype or None when not convertible).
_DTYPES: dict[int, tuple[str, Any]] = {
    1: ("float", np.float32),
    2: ("double", np.float64),
    3: ("int32", np.int32),
    4: ("uint8", np.uint8),
    5: ("int16", np.int16),
    6: ("int8", np.int8),
    7: ("string", object),
    8: ("complex64", None),
    9: ("int64", np.int64),
    10: ("bool", np.bool_),
    11: ("qint8", None),
    12: ("quint8", None),
    13: ("qint32", None),
    14: ("bfloat16", None),
    15: ("qint16", None),
    16: ("quint16", None),
    17: ("uint16", None),
    18: ("complex128", None),
    19: ("half", None),
    20: ("resource", None),
    21: ("variant", None),
    22: ("uint32", np.uint32),
    23: ("uint64", np.uint64),
}
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT32, DT_UINT64 = 9, 10, 22, 23
_INT_RANGES = {
    DT_INT32: (-(2**31), 2**31 - 1),
    DT_INT16: (-(2**31), 2**31 - 1),
    DT_INT8: (-(2**31), 2**31 - 1),
    DT_UINT8: (-(2**31), 2**31 - 1),
    DT_INT64: (-(2**63), 2**63 - 1),
    DT_UINT32: (0, 2**32 - 1),
    DT_UINT64: (0, 2**64 - 1),
}


def dtype_name(dtype: int) -> str:
    """TF's DataTypeString for a DataType enum value (`float`, `int64`, `string`, ...)."""
    entry = _DTYPES.get(int(dtype))
    return entry[0] if entry else f"unknown dtype enum ({int(dtype)})"


def _invalid(message: str) -> StatusError:
    return StatusError(Code.INVALID_ARGUMENT, message)


# ---------------------------------------------------------------------------------------------
# Parsing: orjson for ordinary documents, a rapidjson-faithful iterative reader for the rest.
# ---------------------------------------------------------------------------------------------

_PARSE_ERRORS = {
    "empty": "The document is empty.",
    "value": "Invalid value.",
    "name": "Missing a name for object member.",
    "colon": "Missing a colon after a name of object member.",
    "obj_comma": "Missing a comma or '}' after an object member.",
    "arr_comma": "Missing a comma or ']' after an array element.",
    "hex": "Incorrect hex digit after \\u escape in string.",
    "surrogate": "The surrogate pair in string is invalid.",
    "escape": "Invalid escape character in string.",
    "quote": "Missing a closing quotation mark in string.",
    "too_big": "Number too big to be stored in double.",
    "fraction": "Miss fraction part in number.",
    "exponent": "Miss exponent in number.",
}


class _ParseError(Exception):
    def __init__(self, kind: str, offset: int) -> None:
        super().__init__(kind, offset)
        self.kind = kind
        self.offset = offset


_WS = re.compile(rb"[ \t\n\r]*")
_OPEN_RUN = re.compile(rb"\[*")
_PLAIN_STRING = re.compile(rb'"([^"\\\x00-\x1f]*)"')
_SIMPLE_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]{0,17})(\.[0-9]{1,15})?(?:[eE][+-]?[0-9]{1,2})?(?![0-9.eE])")
_ESCAPES = {
    ord('"'): '"',
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
}
_HEX = b"0123456789abcdefABCDEF"

# Parser states (rapidjson's IterativeParsingState, only the ones that persist).
_START, _FINISH, _OBJ_INIT, _MEMBER_KEY, _KV_DELIM, _MEMBER_VALUE, _MEMBER_DELIM = range(7)
_ARR_INIT, _ELEMENT, _ELEM_DELIM = 7, 8, 9


class _Reader:
    """rapidjson 1.1.0 `Reader::IterativeParse` with kParseNanAndInfFlag | kParseStopWhenDoneFlag.

    Iterative on purpose: arbitrarily deep nesting is legal input (TF Serving test
    `DeeplyNestedWellFormed`), so nothing here may recurse on the document structure.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)

    def peek(self, pos: int) -> int:
        return self.data[pos] if pos < self.n else 0

    def parse(self) -> Any:
        data = self.data
        pos = 0
        # EncodedInputStream<UTF8, MemoryStream> drops each of EF, BB, BF if present, in order.
        for bom_byte in (0xEF, 0xBB, 0xBF):
            if self.peek(pos) == bom_byte:
                pos += 1
        stack: list[tuple[int, Any, Any]] = []  # (state to restore, container, pending key)
        state = _START
        container: Any = None
        key: Any = None
        root: Any = None
        pos = _WS.match(data, pos).end()  # type: ignore[union-attr]  # \s* always matches
        while True:
            c = self.peek(pos)
            if c == 0:
                break
            if c == 0x5B and state == _ARR_INIT:
                # Runs of "[" (deeply nested arrays) are built in one tight loop.
                end = _OPEN_RUN.match(data, pos).end()  # type: ignore[union-attr]  # peeked "[" matches
                for _ in range(end - pos):
                    nested: list[Any] = []
                    container.append(nested)
                    stack.append((_ELEMENT, container, None))
                    container = nested
                pos = end
            elif c == 0x5B or c == 0x7B:  # [ {
                if state in (_START, _ARR_INIT, _ELEM_DELIM, _KV_DELIM):
                    new: Any = [] if c == 0x5B else {}
                    if state == _START:
                        restore = _START
                        root = new
                    elif state == _KV_DELIM:
                        restore = _MEMBER_VALUE
                        container[key] = new
                    else:
                        restore = _ELEMENT
                        container.append(new)
                    stack.append((restore, container, key))
                    container, key = new, None
                    state = _ARR_INIT if c == 0x5B else _OBJ_INIT
                    pos += 1
                else:
                    self._error(state, pos)
            elif c == 0x5D:  # ]
                if state in (_ARR_INIT, _ELEMENT):
                    state, container, key = stack.pop()
                    pos += 1
                    # Consecutive "]" keep closing while the enclosing value is an array element.
                    while state == _ELEMENT and pos < self.n and data[pos] == 0x5D:
                        state, container, key = stack.pop()
                        pos += 1
                    if state == _START:
                        state = _FINISH
                elif state == _ELEM_DELIM:
                    raise _ParseError("value", pos)
                else:
                    self._error(state, pos)
            elif c == 0x7D:  # }
                if state in (_OBJ_INIT, _MEMBER_VALUE):
                    state, container, key = stack.pop()
                    if state == _START:
                        state = _FINISH
                    pos += 1
                elif state == _MEMBER_DELIM:
                    raise _ParseError("name", pos)
                else:
                    self._error(state, pos)
            elif c == 0x2C:  # ,
                if state == _MEMBER_VALUE:
                    state = _MEMBER_DELIM
                elif state == _ELEMENT:
                    state = _ELEM_DELIM
                else:
                    self._error(state, pos)
                pos += 1
            elif c == 0x3A:  # :
                if state != _MEMBER_KEY:
                    self._error(state, pos)
                state = _KV_DELIM
                pos += 1
            elif c == 0x22 and state in (_OBJ_INIT, _MEMBER_DELIM):
                key, pos = self._string(pos)
                state = _MEMBER_KEY
            elif state in (_START, _ARR_INIT, _ELEM_DELIM, _KV_DELIM):
                value, pos = self._value(pos)
                if state == _START:
                    root = value
                    state = _FINISH
                elif state == _KV_DELIM:
                    container[key] = value
                    state = _MEMBER_VALUE
                else:
                    container.append(value)
                    state = _ELEMENT
            else:
                self._error(state, pos)
            if state == _FINISH:
                return root
            pos = _WS.match(data, pos).end()  # type: ignore[union-attr]  # \s* always matches
        self._error(state, pos)

    @staticmethod
    def _error(state: int, pos: int) -> None:
        kind = {
            _START: "empty",
            _FINISH: "empty",
            _OBJ_INIT: "name",
            _MEMBER_DELIM: "name",
            _MEMBER_KEY: "colon",
            _MEMBER_VALUE: "obj_comma",
            _KV_DELIM: "value",
            _ARR_INIT: "value",
            _ELEM_DELIM: "value",
            _ELEMENT: "arr_comma",
        }[state]
        raise _ParseError(kind, pos)

    def _value(self, pos: int) -> tuple[Any, int]:
        c = self.data[pos]
        if c == 0x22:
            return self._string(pos)
        if c == 0x6E:
            return None, self._literal(pos, b"null")
        if c == 0x74:
            return True, self._literal(pos, b"true")
        if c == 0x66:
            return False, self._literal(pos, b"false")
        return self._number(pos)

    def _literal(self, pos: int, word: bytes) -> int:
        for i in range(1, len(word)):
            if self.peek(pos + i) != word[i]:
                raise _ParseError("value", pos + i)
        return pos + len(word)

    def _string(self, pos: int) -> tuple[str, int]:
        m = _PLAIN_STRING.match(self.data, pos)
        if m is not None:
            return m.group(1).decode("utf-8", "surrogateescape"), m.end()
        data = self.data
        pos += 1
        out: list[str] = []
        raw = bytearray()
        while True:
            c = self.peek(pos)
            if c == 0x5C:  # backslash
                escape_offset = pos
                e = self.peek(pos + 1)
                if e in _ESCAPES:
                    raw += _ESCAPES[e].encode()
                    pos += 2
                elif e == 0x75:  # u
                    pos += 2
                    cp, pos = self._hex4(pos, escape_offset)
                    if 0xD800 <= cp <= 0xDBFF:
                        if self.peek(pos) != 0x5C or self.peek(pos + 1) != 0x75:
                            raise _ParseError("surrogate", escape_offset)
                        cp2, pos = self._hex4(pos + 2, escape_offset)
                        if not 0xDC00 <= cp2 <= 0xDFFF:
                            raise _ParseError("surrogate", escape_offset)
                        cp = (((cp - 0xD800) << 10) | (cp2 - 0xDC00)) + 0x10000
                    raw += chr(cp).encode("utf-8", "surrogatepass")
                else:
                    raise _ParseError("escape", escape_offset)
            elif c == 0x22:
                out.append(bytes(raw).decode("utf-8", "surrogateescape"))
                return "".join(out), pos + 1
            elif c < 0x20:
                raise _ParseError("quote" if c == 0 else "escape", pos)
            else:
                raw.append(data[pos])
                pos += 1

    def _hex4(self, pos: int, escape_offset: int) -> tuple[int, int]:
        chunk = self.data[pos : pos + 4]
        if len(chunk) < 4 or any(b not in _HEX for b in chunk):
            raise _ParseError("hex", escape_offset)
        return int(chunk, 16), pos + 4

    def _number(self, pos: int) -> tuple[int | float, int]:
        m = _SIMPLE_NUMBER.match(self.data, pos)
        if m is not None:
            text = m.group(0)
            if m.group(1) is None and b"e" not in text and b"E" not in text:
                return int(text), m.end()
            return float(text), m.end()
        return self._number_slow(pos)

    def _number_slow(self, pos: int) -> tuple[int | float, int]:
        """rapidjson ParseNumber, for the rare shapes the regular expression above declines."""
        start = pos
        peek = self.peek
        minus = peek(pos) == 0x2D
        if minus:
            pos += 1
        is_digit = lambda b: 0x30 <= b <= 0x39  # noqa: E731
        c = peek(pos)
        int_digits_start = pos
        value: int | float
        nan_or_inf = False
        if c == 0x30:
            pos += 1
        elif 0x31 <= c <= 0x39:
            while is_digit(peek(pos)):
                pos += 1
        elif c in (0x49, 0x4E):  # I N
            nan_or_inf = True
            if self.data[pos : pos + 3] == b"NaN":
                pos += 3
                value = math.nan
            elif self.data[pos : pos + 3] == b"Inf":
                pos += 3
                value = -math.inf if minus else math.inf
                if peek(pos) == 0x69:  # 'i' must continue as "inity"
                    for ch in b"inity":
                        if peek(pos) != ch:
                            raise _ParseError("value", pos)
                        pos += 1
            else:
                # Consume() advances over the matching prefix before failing.
                for ch in b"NaN" if c == 0x4E else b"Inf":
                    if peek(pos) != ch:
                        break
                    pos += 1
                raise _ParseError("value", pos)
        else:
            raise _ParseError("value", pos)
        int_text = self.data[int_digits_start:pos] if not nan_or_inf else b"0"
        # Emulate rapidjson's digit accounting: it decides "too big" from how many fraction
        # digits it folded into the significand (expFrac), not from the final value.
        use_double = False
        d = 0.0
        significant = max(0, len(int_text) - 1) if int_text[:1] not in (b"0", b"") else 0
        # More than 20 digits is past uint64 whatever they are, and int() refuses 4,300+ digits.
        too_long = len(int_text) > 20
        magnitude = int(int_text) if not nan_or_inf and not too_long else 0
        if not nan_or_inf and (too_long or (minus and magnitude > 2**63) or (not minus and magnitude > 2**64 - 1)):
            use_double = True
            limit = 2**63 if minus else 2**64 - 1
            prefix_value = 0
            cut = 0
            for cut, digit in enumerate(int_text):
                if prefix_value * 10 + (digit - 0x30) > limit:
                    break
                prefix_value = prefix_value * 10 + (digit - 0x30)
            d = float(prefix_value)
            for digit in int_text[cut:]:
                if d >= 1.7976931348623157e307:
                    raise _ParseError("too_big", start)
                d = d * 10 + (digit - 0x30)
        is_double = use_double
        exp_frac = 0
        frac_text = b""
        if peek(pos) == 0x2E:  # .
            pos += 1
            if not is_digit(peek(pos)):
                raise _ParseError("fraction", pos)
            frac_start = pos
            while is_digit(peek(pos)):
                pos += 1
            frac_text = self.data[frac_start:pos]
            rest = frac_text
            if not use_double:
                i64 = magnitude
                while rest and i64 <= 2**53 - 1:
                    i64 = i64 * 10 + (rest[0] - 0x30)
                    rest = rest[1:]
                    exp_frac -= 1
                    if i64 != 0:
                        significant += 1
                d = float(i64)
            for digit in rest:
                if significant < 17:
                    d = d * 10.0 + (digit - 0x30)
                    exp_frac -= 1
                    if d > 0.0:
                        significant += 1
            is_double = True
        exp_text = b""
        if peek(pos) in (0x65, 0x45):  # e E
            is_double = True
            pos += 1
            exp_minus = False
            if peek(pos) == 0x2B:
                pos += 1
            elif peek(pos) == 0x2D:
                exp_minus = True
                pos += 1
            if not is_digit(peek(pos)):
                raise _ParseError("exponent", pos)
            exp_start = pos
            exp = 0
            max_exp = 308 - exp_frac
            while is_digit(peek(pos)):
                if exp < 214748364:  # rapidjson stops accumulating here too (its issue #313)
                    exp = exp * 10 + (self.data[pos] - 0x30)
                pos += 1
                if not exp_minus and exp > max_exp:
                    raise _ParseError("too_big", start)
            # A negative exponent this long underflows to zero; keep float() from a huge string.
            exp_text = (b"-" if exp_minus else b"") + (self.data[exp_start:pos] if exp < 214748364 else b"999999999")
        if nan_or_inf and not frac_text and not exp_text:
            return value, pos
        if not is_double:
            magnitude = int(int_text)
            return (-magnitude if minus else magnitude), pos
        # A NaN/Infinity followed by a fraction or exponent restarts from zero in rapidjson.
        text = (b"-" if minus else b"") + (int_text or b"0")
        if frac_text:
            text += b"." + frac_text
        if exp_text:
            text += b"e" + exp_text
        return float(text), pos


def parse_json(body: bytes) -> dict:
    """Parse a request body as TF Serving does; the top level must be an object.

    Raises:
        StatusError: INVALID_ARGUMENT with rapidjson's message (`JSON Parse error: ...`) or
            `JSON Value: ... Is not object`.
    """
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        # The parser allocates containers by the hundred thousand on deep documents; the
        # cyclic GC would rescan the whole (TensorFlow-sized) heap many times meanwhile.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            doc = _Reader(bytes(body)).parse()
        except _ParseError as exc:
            raise _invalid(
                f"JSON Parse error: {_PARSE_ERRORS[exc.kind]} at offset: {exc.offset}"
            ) from exc
        finally:
            if gc_was_enabled:
                gc.enable()
    if type(doc) is not dict:
        raise _invalid(f"JSON Value: {debug_string(doc)} Is not object")
    return doc


# ---------------------------------------------------------------------------------------------
# Debug rendering (JsonValueToDebugString): PrettyWriter, single-line arrays, ~256 bytes.
# ---------------------------------------------------------------------------------------------

_STRING_ESCAPES = {i: "\\u%04X" % i for i in range(0x20)}
_STRING_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"})
_STRING_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _quote(s: str) -> str:
    """rapidjson Writer::String: escapes quote, backslash and control characters only."""
    if _NEEDS_ESCAPE.search(s) is None:
        return f'"{s}"'
    return '"' + s.translate(_STRING_ESCAPES) + '"'


def _rapidjson_double(d: float) -> str | None:
    """rapidjson Writer::Double text (Grisu shortest digits + Prettify); None for NaN/Inf."""
    if math.isnan(d) or math.isinf(d):
        return None
    if d == 0:
        return "-0.0" if math.copysign(1.0, d) < 0 else "0.0"
    sign = "-" if d < 0 else ""
    text = repr(abs(d))
    mantissa, _, exponent = text.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    k = (int(exponent) if exponent else 0) - len(frac_part)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k
    if 0 <= k and kk <= 21:
        body = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        body = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        body = "0." + "0" * (-kk) + digits
    elif kk < -324:
        body = "0.0"
    elif length == 1:
        body = digits + "e" + str(kk - 1)
    else:
        body = digits[0] + "." + digits[1:] + "e" + str(kk - 1)
    return sign + body


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return _rapidjson_double(value)
    if isinstance(value, str):
        return _quote(value)
    return str(value)


def debug_string(value: Any, limit: int = _MAX_DEBUG_BYTES) -> str:
    """Render a parsed JSON value as TF Serving's error messages do (truncated near `limit`).

    Every write is skipped once the output has reached `limit` bytes, and a NaN/Infinity
    stops the rendering after its separator, exactly like rapidjson's writer aborting.
    """
    out: list[str] = []
    size = 0
    # Each level: [is_array, value_count]
    levels: list[list] = []
    single_line = True

    def prefix() -> str:
        if not levels:
            return ""
        level = levels[-1]
        text = ""
        if level[0]:
            if level[1] > 0:
                text = ", " if single_line else ","
        else:
            if level[1] > 0:
                text = ",\n" if level[1] % 2 == 0 else ": "
            else:
                text = "\n"
            if level[1] % 2 == 0:
                text += "    " * len(levels)
        level[1] += 1
        return text

    # Work items: ("value", v) | ("key", k) | ("end_obj",) | ("end_arr",)
    work: list[tuple] = [("value", value)]
    while work:
        if size >= limit:
            break
        item = work.pop()
        kind = item[0]
        if kind == "value":
            v = item[1]
            if type(v) is dict:
                text = prefix() + "{"
                levels.append([False, 0])
                work.append(("end_obj",))
                for k, child in reversed(list(v.items())):
                    work.append(("value", child))
                    work.append(("key", k))
            elif type(v) is list:
                text = prefix() + "["
                levels.append([True, 0])
                work.append(("end_arr",))
                for child in reversed(v):
                    work.append(("value", child))
            else:
                scalar = _scalar_text(v)
                text = prefix()
                if scalar is None:
                    out.append(text)
                    break
                text += scalar
        elif kind == "key":
            text = prefix() + _quote(item[1])
        elif kind == "end_obj":
            level = levels.pop()
            text = ("\n" + "    " * len(levels) + "}") if level[1] else "}"
        else:
            levels.pop()
            text = "]"
        out.append(text)
        size += len(text.encode("utf-8", "surrogateescape"))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Predict requests.
# ---------------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if type(value) is dict:
        return "Object"
    if type(value) is list:
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _is_b64_object(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and isinstance(value.get("b64"), str)


def _b64_decode(value: Any) -> bytes:
    if not _is_b64_object(value):
        raise _invalid(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    try:
        return _absl_base64_unescape(value["b64"])
    except ValueError as exc:
        raise _invalid("Unable to base64 decode") from exc


def _absl_base64_unescape(text: str) -> bytes:
    """absl::Base64Unescape: standard alphabet, padding optional, whitespace skipped."""
    data = text.encode("utf-8", "surrogateescape")
    data = re.sub(rb"[ \t\n\r\f\v]", b"", data)
    stripped = data.rstrip(b"=")
    pad = len(data) - len(stripped)
    if pad > 2 or (pad and (len(data) % 4 != 0)) or b"=" in stripped or len(stripped) % 4 == 1:
        raise ValueError("bad base64")
    try:
        return base64.b64decode(stripped + b"=" * (-len(stripped) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("bad base64") from exc


def _type_error(value: Any, dtype: int) -> StatusError:
    return _invalid(
        f"JSON Value: {debug_string(value)} Type: {_json_type(value)} is not of expected type: {dtype_name(dtype)}"
    )


def _convert_scalar(value: Any, dtype: int) -> Any:
    """AddValueToTensor for one leaf (objects already excluded unless b64 for strings)."""
    tv = type(value)
    if dtype in (DT_FLOAT, DT_DOUBLE):
        if tv is int or tv is float:
            return value
        raise _type_error(value, dtype)
    if dtype in _INT_RANGES:
        lo, hi = _INT_RANGES[dtype]
        if tv is int and lo <= value <= hi:
            return value
        raise _type_error(value, dtype)
    if dtype == DT_BOOL:
        if tv is bool:
            return value
        raise _type_error(value, dtype)
    if dtype == DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        raise _type_error(value, dtype)
    raise StatusError(
        Code.UNIMPLEMENTED, f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_name(dtype)}"
    )


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while type(value) is list:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill_tensor(value: Any, dtype: int) -> tuple[list[int], list[Any]]:
    """GetDenseTensorShape + FillTensorProto, iteratively. Returns (shape, flat leaves)."""
    shape = _dense_shape(value)
    rank = len(shape)
    leaves: list[Any] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        val, level = stack.pop()
        if type(val) is not list:
            if level != rank:
                raise _invalid(
                    f"JSON Value: {debug_string(val)} found at incorrect level: {level + 1} "
                    f"in the JSON DOM. Expected at level: {rank}"
                )
            if type(val) is dict:
                if dtype == DT_STRING:
                    leaves.append(_b64_decode(val))
                    continue
                raise _type_error(val, dtype)
            leaves.append(_convert_scalar(val, dtype))
            continue
        if level >= rank:
            raise _invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(val) != shape[level]:
            raise _invalid(
                f"Encountered list at unexpected size: {len(val)} at level: {level} expected size: {shape[level]}"
            )
        for child in reversed(val):
            stack.append((child, level + 1))
    return shape, leaves


def _to_array(shape: Sequence[int], leaves: list[Any], dtype: int, name: str) -> np.ndarray:
    if len(shape) > _MAX_NUMPY_RANK:
        raise _invalid(f"tensor parsing error: {name}")
    np_dtype = _DTYPES[dtype][1]
    if dtype == DT_STRING:
        arr = np.empty(len(leaves), dtype=object)
        arr[:] = leaves
        return arr.reshape(shape)
    if dtype == DT_FLOAT:
        # rapidjson's GetFloat() goes through double, so integers round twice like TF Serving.
        with np.errstate(over="ignore"):
            return np.array(leaves, dtype=np.float64).astype(np.float32).reshape(shape)
    if dtype in (DT_INT8, DT_UINT8, DT_INT16):
        # TF Serving stores these in int_val without a range check; the cast wraps.
        return np.array(leaves, dtype=np.int64).astype(np_dtype).reshape(shape)
    return np.array(leaves, dtype=np_dtype).reshape(shape)


def _fast_numeric(value: Any, dtype: int, allow_bools: bool) -> np.ndarray | None:
    """Vectorised conversion for regular numeric lists; None means "use the exact path".

    Only taken when the result is certain to equal the exact path's: numpy must see a
    regular int/float array, and bools must be impossible (`allow_bools` False means the
    body has no `true`/`false` token, since numpy would silently turn them into numbers).
    """
    if allow_bools or dtype not in _INT_RANGES and dtype not in (DT_FLOAT, DT_DOUBLE):
        return None
    if type(value) is not list:
        return None
    try:
        arr = np.array(value)
    except (ValueError, OverflowError, TypeError):
        return None
    kind = arr.dtype.kind
    if arr.ndim > _MAX_NUMPY_RANK:
        return None
    if dtype in (DT_FLOAT, DT_DOUBLE):
        if kind not in "fiu":
            return None
        if dtype == DT_FLOAT:
            with np.errstate(over="ignore"):  # beyond float range is +-inf, as in TF Serving
                return arr.astype(np.float64, copy=False).astype(np.float32)
        return arr.astype(np.float64, copy=False)
    if kind not in "iu":
        return None
    if arr.size:
        lo, hi = _INT_RANGES[dtype]
        if int(arr.min()) < lo or int(arr.max()) > hi:
            return None
    return arr.astype(_DTYPES[dtype][1])


def _tensor_from_value(value: Any, dtype: int, name: str, allow_bools: bool) -> np.ndarray:
    arr = _fast_numeric(value, dtype, allow_bools)
    if arr is not None:
        return arr
    shape, leaves = _fill_tensor(value, dtype)
    return _to_array(shape, leaves, dtype, name)


def signature_name_from_json(doc: Mapping[str, Any]) -> str:
    """The request's `signature_name` ("" when absent), with TF Serving's type check."""
    if "signature_name" not in doc:
        return ""
    name = doc["signature_name"]
    if not isinstance(name, str):
        raise _invalid(
            f"JSON Value: {debug_string(doc)} not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


def predict_inputs_from_json(
    doc: Mapping[str, Any],
    input_dtypes: Mapping[str, int],
    *,
    signature_name: str = "",
    body: bytes | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """Convert a parsed Predict body to input tensors (FillPredictRequestFromJson after lookup).

    Args:
        doc: the parsed body (from `parse_json`).
        input_dtypes: signature input alias -> tensorflow DataType enum value.
        signature_name: as sent, only for the "no inputs" error text.
        body: the raw body; lets the vectorised path rule out booleans cheaply.

    Returns:
        (inputs, format) with format `ROW` or `COLUMNAR`.
    """
    if not input_dtypes:
        raise _invalid(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    allow_bools = body is None or b"true" in body or b"false" in body
    has_instances = "instances" in doc
    has_inputs = "inputs" in doc
    if has_instances and has_inputs:
        raise _invalid(
            f"JSON Value: {debug_string(doc)} Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist "
        )
    if has_instances:
        instances = doc["instances"]
        if type(instances) is not list:
            raise _invalid(f"JSON Value: {debug_string(doc)} Expecting 'instances' to be an list/array")
        if not instances:
            raise _invalid(f"JSON Value: {debug_string(doc)} No values in 'instances' array")
        return _from_instances(instances, input_dtypes, allow_bools), ROW
    if has_inputs:
        return _from_inputs(doc["inputs"], input_dtypes, allow_bools), COLUMNAR
    raise _invalid("Missing 'inputs' or 'instances' key")


def _is_element_object(value: Any) -> bool:
    return type(value) is dict and not _is_b64_object(value)


def _from_instances(instances: list, input_dtypes: Mapping[str, int], allow_bools: bool) -> dict[str, np.ndarray]:
    first = instances[0]
    if type(first) is not dict and len(input_dtypes) > 1:
        raise _invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    names = sorted(input_dtypes)
    if _is_element_object(first):
        fast = _instances_objects_fast(instances, input_dtypes, names, allow_bools)
        if fast is not None:
            return fast
        return _instances_exact(instances, input_dtypes, names, objects=True)
    arr = _fast_numeric(instances, input_dtypes[names[0]], allow_bools)
    if arr is not None:
        return {names[0]: arr}
    return _instances_exact(instances, input_dtypes, names, objects=False)


def _instances_objects_fast(
    instances: list, input_dtypes: Mapping[str, int], names: list[str], allow_bools: bool
) -> dict[str, np.ndarray] | None:
    key_set = set(names)
    for elem in instances:
        if type(elem) is not dict or elem.keys() != key_set or _is_b64_object(elem):
            return None
    result = {}
    for name in names:
        arr = _fast_numeric([elem[name] for elem in instances], input_dtypes[name], allow_bools)
        if arr is None:
            return None
        result[name] = arr
    return result


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _instances_exact(
    instances: list, input_dtypes: Mapping[str, int], names: list[str], *, objects: bool
) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList, faithfully (error order and texts)."""
    shapes: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    leaves: dict[str, list[Any]] = {}
    single = names[0]

    def add_item(item: Any, name: str) -> None:
        if name not in input_dtypes:
            raise _invalid(f"JSON object: does not have named input: {name}")
        shape, values = _fill_tensor(item, input_dtypes[name])
        if name not in sizes:
            sizes[name] = len(values)
            shapes[name] = shape
            leaves[name] = list(values)
            return
        if sizes[name] != len(values):
            raise _invalid(f"Expecting tensor size: {sizes[name]} but got: {len(values)}")
        if shapes[name] != shape:
            raise _invalid(f"Expecting shape {_shape_text(shapes[name])} but got: {_shape_text(shape)}")
        leaves[name].extend(values)

    for index, elem in enumerate(instances):
        if objects:
            if not _is_element_object(elem):
                raise _invalid(f"Expecting object but got list at item {index} of input list")
            for key, item in elem.items():
                try:
                    add_item(item, key)
                except StatusError as exc:
                    raise _invalid(
                        f"Failed to process element: {index} key: {key} of 'instances' list. Error: {exc}"
                    ) from exc
            if set(elem) != set(names):
                raise _invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{debug_string(elem)} keys must be equal to: {','.join(names)}"
                )
        else:
            if _is_element_object(elem):
                raise _invalid(f"Expecting value/list but got object at item {index} of input list")
            try:
                add_item(elem, single)
            except StatusError as exc:
                raise _invalid(f"Failed to process element: {index} of 'instances' list. Error: {exc}") from exc
    count = len(instances)
    return {
        name: _to_array([count, *shapes[name]], leaves[name], input_dtypes[name], name) for name in leaves
    }


def _from_inputs(value: Any, input_dtypes: Mapping[str, int], allow_bools: bool) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap."""
    if type(value) is not dict or _is_b64_object(value):
        if len(input_dtypes) > 1:
            raise _invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        (name,) = input_dtypes
        return {name: _tensor_from_value(value, input_dtypes[name], name, allow_bools)}
    result = {}
    for name in sorted(input_dtypes):
        if name not in value:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        result[name] = _tensor_from_value(value[name], input_dtypes[name], name, allow_bools)
    return result


# ---------------------------------------------------------------------------------------------
# Responses: rapidjson PrettyWriter bytes.
# ---------------------------------------------------------------------------------------------


def format_float(value: float, *, is_float32: bool) -> str:
    """TF Serving's WriteDecimal: "%g" (six digits) when it round-trips, else 9/17 digits.

    Example: format_float(3.0, is_float32=True) == "3.0"; 1/3 as float32 -> "0.333333343".
    """
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    text = "%.6g" % value
    try:
        back = _F32.unpack(_F32.pack(float(text)))[0] if is_float32 else float(text)
    except OverflowError:  # rounded past float32's range: cannot round-trip
        back = math.nan
    if back != value:
        text = ("%.9g" if is_float32 else "%.17g") % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


_NON_FINITE = {"nan": "NaN", "-nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _format_floats(arr: np.ndarray) -> list[str]:
    """`format_float` over an array: "%.6g" for all, one round-trip check in C for the lot.

    float32 values are rounded back through `array("f")` (a C cast, like numpy's astype and
    TF's own float parsing), float64 ones compared as parsed; only the values that do not
    round-trip are formatted again with 9 (float32) or 17 digits.
    """
    is_f32 = arr.dtype == np.float32
    values = arr.reshape(-1).tolist()
    texts = ["%.6g" % v for v in values]
    parsed = map(float, texts)  # "nan"/"inf" parse too; NaN never round-trips, so it is reformatted
    back = array.array("f", parsed) if is_f32 else parsed
    long_fmt = "%.9g" if is_f32 else "%.17g"
    for i, (b, v) in enumerate(zip(back, values)):
        if b != v:
            texts[i] = long_fmt % v
    return [
        t if ("." in t or "e" in t) else (_NON_FINITE[t] if "n" in t else t + ".0") for t in texts
    ]


def _output_dtype_name(arr: np.ndarray) -> str:
    kind = arr.dtype.kind
    names = {
        np.dtype(np.float16): "half",
        np.dtype(np.complex64): "complex64",
        np.dtype(np.complex128): "complex128",
        np.dtype(np.uint16): "uint16",
    }
    if arr.dtype in names:
        return names[arr.dtype]
    if kind in "OSU":
        return "string"
    return str(arr.dtype)


def _leaf_texts(arr: np.ndarray, alias: str, leaf_level: int) -> list[str]:
    """Every element of `arr` as JSON text, in C order."""
    dtype = arr.dtype
    if arr.size == 0:
        return []
    if dtype == np.float32 or dtype == np.float64:
        return _format_floats(arr)
    if dtype.kind in "iu" and dtype not in (np.dtype(np.uint16),):
        return [str(v) for v in arr.reshape(-1).tolist()]
    if dtype == np.bool_:
        return ["true" if v else "false" for v in arr.reshape(-1).tolist()]
    if dtype.kind in "OSU":
        values = [v if isinstance(v, bytes) else str(v).encode() for v in arr.reshape(-1).tolist()]
        if alias.endswith("_bytes"):
            inner = "    " * (leaf_level + 1)
            outer = "    " * leaf_level
            return [
                '{\n' + inner + '"b64": "' + base64.b64encode(v).decode("ascii") + '"\n' + outer + "}"
                for v in values
            ]
        return [_quote(v.decode("utf-8", "surrogateescape")) for v in values]
    raise _invalid(f"Failed to write JSON value for tensor type: {_output_dtype_name(arr)}")


def _nest(texts: list[str], shape: Sequence[int], level: int, single_line: bool) -> str:
    """Lay out C-ordered element texts as nested JSON arrays starting at writer level `level`."""
    if not shape:
        return texts[0]
    rank = len(shape)
    if 0 in shape:
        # Arrays are written down to the first empty dimension, which prints as "[]".
        return _nest_with_zero(shape, level, single_line)
    items = texts
    for depth in range(rank - 1, -1, -1):
        n = shape[depth]
        if single_line:
            sep, head, tail = ", ", "[", "]"
        else:
            inner = "\n" + "    " * (level + depth + 1)
            sep, head, tail = "," + inner, "[" + inner, "\n" + "    " * (level + depth) + "]"
        items = [head + sep.join(items[i : i + n]) + tail for i in range(0, len(items), n)]
    return items[0]


def _nest_with_zero(shape: Sequence[int], level: int, single_line: bool) -> str:
    zero_at = list(shape).index(0)
    texts = ["[]"] * math.prod(shape[:zero_at])
    return _nest(texts, shape[:zero_at], level, single_line) if zero_at else "[]"


def predict_response_json(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    """MakeJsonFromTensors: `{"predictions": ...}` (row) or `{"outputs": ...}` (columnar)."""
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    if fmt == ROW:
        return _row_json(names, arrays)
    if fmt == COLUMNAR:
        return _columnar_json(names, arrays)
    raise _invalid("Invalid request format")


def _row_json(names: list[str], arrays: dict[str, np.ndarray]) -> bytes:
    batch = -1
    for name in names:
        arr = arrays[name]
        if arr.ndim == 0:
            raise _invalid(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and arr.shape[0] != batch:
            raise _invalid(f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} expecting: {batch}")
        batch = arr.shape[0]
    multi = len(names) > 1
    # Item values sit inside root object + predictions array (+ the item object when multi).
    level = 3 if multi else 2
    per_item: dict[str, list[str]] = {}
    for name in names:
        arr = arrays[name]
        sub_shape = arr.shape[1:]
        texts = _leaf_texts(arr, name, level + len(sub_shape))
        per = math.prod(sub_shape)
        per_item[name] = [
            _nest(texts[i * per : (i + 1) * per], sub_shape, level, True) if per else _nest([], sub_shape, level, True)
            for i in range(batch)
        ]
    if batch == 0:
        return b'{\n    "predictions": []\n}'
    if not multi:
        body = ", ".join(per_item[names[0]])
        return ('{\n    "predictions": [' + body + "\n    ]\n}").encode("utf-8", "surrogateescape")
    blocks = []
    for i in range(batch):
        members = ",\n".join("            " + _quote(name) + ": " + per_item[name][i] for name in names)
        blocks.append("\n        {\n" + members + "\n        }")
    return ('{\n    "predictions": [' + ",".join(blocks) + "\n    ]\n}").encode("utf-8", "surrogateescape")


def _columnar_json(names: list[str], arrays: dict[str, np.ndarray]) -> bytes:
    multi = len(names) > 1
    level = 2 if multi else 1
    rendered = {}
    for name in names:
        arr = arrays[name]
        texts = _leaf_texts(arr, name, level + arr.ndim)
        rendered[name] = _nest(texts, arr.shape, level, False)
    if not multi:
        text = '{\n    "outputs": ' + rendered[names[0]] + "\n}"
    else:
        members = ",\n".join("        " + _quote(name) + ": " + rendered[name] for name in names)
        text = '{\n    "outputs": {\n' + members + "\n    }\n}"
    return text.encode("utf-8", "surrogateescape")


def classify_response_json(results: Sequence[Sequence[tuple[str | bytes, float]]]) -> bytes:
    """MakeJsonFromClassificationResult: `{"results": [[[label, score], ...], ...]}`."""
    if not results:
        raise _invalid("Cannot convert empty ClassificationResults to JSON")
    rows = []
    for classes in results:
        pairs = []
        for label, score in classes:
            if isinstance(label, bytes):
                label = label.decode("utf-8", "surrogateescape")
            pairs.append("[" + _quote(label) + ", " + format_float(float(np.float32(score)), is_float32=True) + "]")
        rows.append("[" + ", ".join(pairs) + "]")
    return ('{\n    "results": [' + ", ".join(rows) + "\n    ]\n}").encode("utf-8", "surrogateescape")


def regress_response_json(values: Sequence[float]) -> bytes:
    """MakeJsonFromRegressionResult: `{"results": [v, ...]}`."""
    if len(values) == 0:
        raise _invalid("Cannot convert empty RegressionResults to JSON")
    texts = _format_floats(np.asarray(values, dtype=np.float32))
    return ('{\n    "results": [' + ", ".join(texts) + "]\n}").encode()


def error_json(message: str) -> bytes:
    """MakeJsonFromStatus: `{"error": message}` as rapidjson PrettyWriter prints it."""
    return ('{\n    "error": ' + _quote(message) + "\n}").encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------------
# Classify / Regress requests: JSON objects -> serialized tf.Example.
# ---------------------------------------------------------------------------------------------

_INT64_MAX = 2**63 - 1


def _feature_from_json(name: str, content: Any, feature: Any) -> None:
    """AddValueToFeature for each element of `content` (a list is a multi-valued feature)."""
    kind = None  # "int64" | "float" | "bytes"
    values: list[Any] = []
    elements = content if type(content) is list else [content]
    item: Any
    for val in elements:
        tv = type(val)
        if val is None or tv is list or (tv is dict and not _is_b64_object(val)):
            raise _invalid(f"Feature: {name} has element with unexpected JSON type: {_json_type(val)}")
        if tv is bool:
            want, item = "int64", 1 if val else 0
        elif tv is dict:
            want, item = "bytes", None
        elif isinstance(val, str):
            want, item = "bytes", val.encode("utf-8", "surrogateescape")
        elif tv is float:
            want, item = "float", val
        else:
            want, item = "int64", val
        if kind is not None and kind != want:
            raise _invalid(f"Unexpected element type in feature: {name} expecting type: {kind}")
        if tv is dict:
            item = _b64_decode(val)
        elif want == "int64" and item > _INT64_MAX:
            raise _invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        kind = want
        values.append(item)
    if kind == "int64":
        feature.int64_list.value.extend(values)
    elif kind == "float":
        feature.float_list.value.extend(values)
    elif kind == "bytes":
        feature.bytes_list.value.extend(values)


def _example_from_json(value: Any) -> bytes:
    from tensorflow.core.example import example_pb2, feature_pb2

    if type(value) is not dict:
        raise _invalid(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = example_pb2.Example()
    features = example.features.feature
    raw_entries: list[bytes] = []
    for name, content in value.items():
        feature = feature_pb2.Feature()
        _feature_from_json(name, content, feature)
        try:
            key = name.encode("utf-8")
        except UnicodeEncodeError:  # invalid UTF-8 in the body (rapidjson keeps raw bytes)
            key = None
        if key is None or raw_entries:
            raw_entries.append(_map_entry(name.encode("utf-8", "surrogateescape"), feature.SerializeToString()))
            continue
        features[name].CopyFrom(feature)
    if raw_entries:
        # protobuf refuses a non-UTF-8 map key; TF Serving's C++ proto writes the bytes as they
        # are, and the model then reports the feature it misses. Encode those entries by hand.
        done = [_map_entry(k.encode("utf-8"), v.SerializeToString()) for k, v in features.items()]
        return _length_delimited(1, _length_delimited(1, b"".join(done + raw_entries)))
    return example.SerializeToString()


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _map_entry(key: bytes, value: bytes) -> bytes:
    """One `map<string, Feature>` entry of Features.feature (field 1): key = 1, value = 2."""
    return _length_delimited(1, _length_delimited(1, key) + _length_delimited(2, value))


def examples_from_json(doc: Mapping[str, Any]) -> list[bytes]:
    """FillClassifyRegressRequestFromJson: `examples` (+ optional `context`) to serialized Examples.

    With a context, each returned string is context bytes + example bytes, which is how TF
    Serving feeds ExampleListWithContext to the model (a protobuf merge; the example wins).
    """
    context = b""
    if "context" in doc:
        context = _example_from_json(doc["context"])
    if "examples" not in doc:
        raise _invalid(
            f"JSON Value: {debug_string(doc)} When method is classify, key 'examples' is expected and was not found"
        )
    examples = doc["examples"]
    if type(examples) is not list:
        raise _invalid(f"JSON Value: {debug_string(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise _invalid(f"JSON Value: {debug_string(doc)} 'examples' value is an empty array")
    return [context + _example_from_json(example) for example in examples]
