"""The sandbox's child process: it loads one heuristic and answers calls over two pipes.

Started by `eplbench.sandbox` as a fresh interpreter (never by multiprocessing, so the
caller's `__main__` is not imported again). Requests and replies are frames of plain data
(`encode_frame` / `read_frame`): an 8-byte little-endian length, a JSON header, then the
raw bytes of each array the header lists (`{"dtype": "<i8", "shape": [2, 12]}`, numeric
and bool dtypes only, native byte order, C order). Nothing on the wire is pickled, so a
reply can hold numbers and strings but no object of the candidate's making.

Replies:
- `{"ready": true}` once the heuristic has loaded, or `{"failure": ["load", detail]}`;
- `{"seconds": s, "form": "tuple" | "array", "arrays": [...]}` for a call: the output as
  a tuple of arrays (a tuple or list was returned) or as one array (a tensor or array
  was returned alone, as vLLM's policy returns phy2log);
- `{"failure": [reason, detail]}` with reason `raised` or `output` (anything else than
  arrays, or a list of them, was returned).
A candidate that exits during a call (`sys.exit`, `os._exit`) ends this process with its
status, which the parent reports.
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import sys

import numpy as np

LENGTH = struct.Struct("<Q")
# largest JSON header and largest total of array bytes one frame may carry
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAY_BYTES = 1 << 28
MAX_DIMENSIONS = 32
# dtypes that may cross the process boundary, by their `dtype.str` in native byte order
WIRE_DTYPES = {np.dtype(name).str: np.dtype(name) for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128")}
# longest detail string a failure may carry
MAX_DETAIL = 2000


class WireError(Exception):
    """A frame that is not well-formed plain data, or an output that cannot become one."""


class Closed(Exception):
    """The other end closed its pipe."""


# ---------------------------------------------------------------- frames (both ends)


def encode_frame(header: dict, arrays: list[np.ndarray] = ()) -> list:
    """The byte buffers of one frame: length, JSON header (with the arrays' dtype and shape
    under "arrays"), then each non-empty array's bytes. Arrays must be of a wire dtype."""
    metas = []
    for array in arrays:
        if array.dtype.str not in WIRE_DTYPES:
            raise WireError(f"dtype {array.dtype} cannot cross")
        metas.append({"dtype": array.dtype.str, "shape": list(array.shape)})
    body = json.dumps({**header, "arrays": metas}, allow_nan=False).encode()
    return [LENGTH.pack(len(body)), body,
            *(memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
              for array in arrays if array.size)]


def decode_header(body: bytes) -> tuple[dict, list[tuple[np.dtype, tuple, int]]]:
    """The header and, per array, (dtype, shape, byte count); WireError when malformed."""
    try:
        header = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise WireError(f"header is not JSON ({type(error).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
        raise WireError("header is not an object with an array list")
    layouts, total = [], 0
    for meta in header["arrays"]:
        if not isinstance(meta, dict) or not isinstance(meta.get("dtype"), str):
            raise WireError("array without a dtype")
        dtype = WIRE_DTYPES.get(meta["dtype"])
        if dtype is None:
            raise WireError(f"dtype {meta['dtype'][:40]!r} is not a numeric or bool dtype")
        shape = meta.get("shape")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS
                or not all(type(n) is int and 0 <= n <= MAX_ARRAY_BYTES for n in shape)):
            raise WireError("array shape is not a list of sizes")
        count = dtype.itemsize
        for n in shape:
            count *= n
            if count > MAX_ARRAY_BYTES:
                raise WireError("arrays over the size limit")
        total += count
        if total > MAX_ARRAY_BYTES:
            raise WireError("arrays over the size limit")
        layouts.append((dtype, tuple(shape), count))
    return header, layouts


def rebuild(dtype: np.dtype, shape: tuple, data: bytearray) -> np.ndarray:
    """An array from its raw bytes (writable, owned by no one else)."""
    if not data:
        return np.zeros(shape, dtype)
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def truncated(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + " [...]"


# ---------------------------------------------------------------- the child's side


def _read_exactly(fd: int, count: int) -> bytearray:
    data = bytearray(count)
    view, done = memoryview(data), 0
    while done < count:
        got = os.readv(fd, [view[done:]])
        if got == 0:
            raise Closed
        done += got
    return data


def _read_request(fd: int) -> tuple[dict, list[np.ndarray]]:
    (length,) = LENGTH.unpack(_read_exactly(fd, LENGTH.size))
    header, layouts = decode_header(bytes(_read_exactly(fd, length)))
    return header, [rebuild(dtype, shape, _read_exactly(fd, count))
                    for dtype, shape, count in layouts]


def _send(fd: int, header: dict, arrays: list[np.ndarray] = ()) -> None:
    for buffer in encode_frame(header, arrays):
        view = memoryview(buffer)
        while view:
            view = view[os.write(fd, view):]


def _exit_status(code) -> int:
    """The process status `sys.exit(code)` would give."""
    if code is None:
        return 0
    return code & 0xFF if isinstance(code, int) else 1


def _describe(error: BaseException) -> str:
    import traceback

    try:
        message = str(error)
    except BaseException:  # noqa: BLE001 - a candidate's __str__ may itself fail
        message = "<unprintable>"
    try:
        where = traceback.extract_tb(error.__traceback__)[-1]
        place = f" ({where.filename}:{where.lineno})"
    except Exception:  # noqa: BLE001 - no frame to name
        place = ""
    return truncated(f"{type(error).__name__}: {message}{place}")


def _as_wire_array(item, torch) -> np.ndarray:
    """A returned tensor or array as a plain ndarray of a wire dtype; WireError otherwise."""
    if isinstance(item, torch.Tensor):
        try:
            item = item.detach().cpu().resolve_conj().resolve_neg().numpy()
        except Exception as error:  # noqa: BLE001
            raise WireError(f"a {item.dtype} tensor that cannot become a numpy array "
                            f"({type(error).__name__}: {error})") from None
    if type(item) is not np.ndarray:  # noqa: E721 - subclasses (masked arrays) do not cross
        kind = "numpy masked array" if isinstance(item, np.ma.MaskedArray) else (
            f"{type(item).__module__}.{type(item).__qualname__}"
            if isinstance(item, np.ndarray) else type(item).__qualname__)
        raise WireError(f"{kind}, not a tensor or a plain numpy array")
    native = item.dtype.newbyteorder("=") if item.dtype.byteorder not in "=|" else item.dtype
    if native.str not in WIRE_DTYPES:
        raise WireError(f"an array of dtype {item.dtype}, not a numeric or bool dtype")
    if item.nbytes > MAX_ARRAY_BYTES:
        raise WireError(f"an array of {item.nbytes} bytes, over the {MAX_ARRAY_BYTES} limit")
    return np.ascontiguousarray(item, dtype=native)


def _output_frame(seconds: float, output, torch) -> tuple[dict, list[np.ndarray]]:
    """The reply for a call's output: its arrays, or an `output` failure saying why not."""
    try:
        if isinstance(output, (tuple, list)):
            arrays = []
            for index, item in enumerate(output):
                try:
                    arrays.append(_as_wire_array(item, torch))
                except WireError as error:
                    raise WireError(f"item {index} of the returned {type(output).__name__} "
                                    f"is a {error}") from None
            form = "tuple"
        else:
            try:
                arrays, form = [_as_wire_array(output, torch)], "array"
            except WireError as error:
                raise WireError(f"returned a {error} (expected tensors: (phy2log, log2phy, "
                                f"logcnt) or phy2log alone)") from None
        if sum(array.nbytes for array in arrays) > MAX_ARRAY_BYTES:
            raise WireError(f"output over {MAX_ARRAY_BYTES} bytes")
    except WireError as error:
        return {"failure": ["output", truncated(f"output cannot be transferred: {error}")]}, []
    return {"seconds": seconds, "form": form}, arrays


def main(spec: str, request_fd: str, reply_fd: str) -> None:
    """Load `spec`, say ready, then answer call requests until the parent closes the pipe.
    A timed call is timed by `timing.timed_call`; the warm-up (untimed) reports 0 s."""
    try:
        _serve(spec, int(request_fd), int(reply_fd))
    except (Closed, BrokenPipeError):  # the parent has gone: nothing to answer
        _exit(0)


def _serve(spec: str, request_fd: int, reply_fd: int) -> None:
    for fd in (request_fd, reply_fd):
        os.set_inheritable(fd, False)  # not passed on to processes the candidate starts
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    import torch

    from eplbench.errors import BadInput
    from eplbench.heuristics import load_heuristic
    from eplbench.timing import timed_call

    torch.set_num_threads(1)
    try:
        heuristic = load_heuristic(spec)
    except BadInput as error:
        _send(reply_fd, {"failure": ["load", truncated(str(error))]})
        _exit(0)
    except SystemExit as stop:
        _exit(_exit_status(stop.code))
    except BaseException as error:  # noqa: BLE001 - whatever the candidate's import raised
        _send(reply_fd, {"failure": ["load", f"{spec}: import failed: {_describe(error)}"]})
        _exit(0)
    _send(reply_fd, {"ready": True})
    while True:
        _flush_prints()
        request, (weight,) = _read_request(request_fd)
        tensor = torch.from_numpy(weight)
        topology = [int(value) for value in request["topology"]]
        try:
            if request["timed"]:
                output, seconds = timed_call(lambda: heuristic(tensor, *topology))
            else:
                output, seconds = heuristic(tensor, *topology), 0.0
        except SystemExit as stop:
            _exit(_exit_status(stop.code))
        except BaseException as error:  # noqa: BLE001 - any failure of the candidate is its result
            _send(reply_fd, {"failure": ["raised", _describe(error)]})
            continue
        try:
            seconds = float(seconds)
        except Exception:  # noqa: BLE001 - a clock the candidate replaced
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            _send(reply_fd, {"failure": ["raised", f"the call's measured time is {seconds!r}"]})
            continue
        _send(reply_fd, *_output_frame(seconds, output, torch))


def _exit(status: int) -> None:
    """End this process now with `status` (no interpreter shutdown: no atexit handler of
    the candidate runs), after what the candidate printed."""
    _flush_prints()
    os._exit(status)


def _flush_prints() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a stream the candidate closed or replaced
            pass


if __name__ == "__main__":
    main(*sys.argv[1:])
