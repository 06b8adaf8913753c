"""What the sync and asyncio clients share: building Put streams, assembling Get streams,
turning responses into Python values. Mirrors clients/cpp/slimkv_client.cc on the wire: tensors
chunked under the message limit, CRC32C of every tensor sent with its first chunk and checked on
every tensor received."""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Sequence

import google_crc32c
import numpy as np

from . import _tensors as T
from .errors import DataLoss, InvalidArgument
from .v1 import cache_pb2 as pb

ROLE_K, ROLE_V, ROLE_X, ROLE_LATENT, ROLE_STORED = 1, 2, 3, 4, 5
MODES = {"full": 1, "slim": 2, "xcache": 3, "latent": 4}
QUANTS = {"none": 1, "fp8": 2, "int8": 3, "int4": 4}
MODE_NAMES = {v: k for k, v in MODES.items()}
QUANT_NAMES = {v: k for k, v in QUANTS.items()}
TIER_NAMES = {1: "gpu", 2: "host", 3: "disk"}


def _enum(value, table, what):
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        return table[value]
    except KeyError:
        raise InvalidArgument(f"{what}: {value!r} is not one of {sorted(table)}") from None


def mode_code(mode) -> int:
    return _enum(mode, MODES, "mode")


def quant_code(quant) -> int:
    return _enum(quant, QUANTS, "quant")


@dataclasses.dataclass(frozen=True)
class Model:
    """A registered model: the handle every other call takes."""
    model_id: str
    page_tokens: int
    num_layers: int
    hidden_size: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int
    latent_dim: int
    softmax_scale: float
    softcap: float
    architecture: str
    factors: str  # "no_weights", "pending", "ready", "failed"
    factors_detail: str = ""
    already_registered: bool = False
    page_bytes_16bit: int = 0

    @staticmethod
    def from_response(r) -> "Model":
        g = r.geometry
        factors = {1: "no_weights", 2: "pending", 3: "ready", 4: "failed"}.get(r.factors, "unknown")
        return Model(r.model_id, r.page_tokens, g.num_layers, g.hidden_size, g.num_q_heads,
                     g.num_kv_heads, g.head_dim, g.v_head_dim, g.latent_dim, g.softmax_scale,
                     g.attn_logit_softcapping, g.architecture, factors, r.factors_detail,
                     r.already_registered, r.page_bytes_16bit)

    def shape(self, role: int) -> tuple[int, ...]:
        """Shape of one page's tensor of `role` (rows = page_tokens)."""
        return {ROLE_K: (self.page_tokens, self.num_kv_heads, self.head_dim),
                ROLE_V: (self.page_tokens, self.num_kv_heads, self.v_head_dim),
                ROLE_X: (self.page_tokens, self.hidden_size)}.get(
                    role, (self.page_tokens, self.latent_dim))


def model_id_of(model) -> str:
    return model.model_id if isinstance(model, Model) else str(model)


@dataclasses.dataclass
class StoredLayer:
    """One layer of one page as stored (Get with raw=True); byte layout in docs/api.md."""
    mode: str
    quant: str
    dtype: str
    shape: tuple[int, ...]
    data: np.ndarray  # uint8, the stored bytes (scales included)


@dataclasses.dataclass
class GetResult:
    """Pages [first_page, first_page + pages) of a prefix. k[l], v[l]: [pages·page_tokens, h_kv,
    d] per layer (None with raw or into=); stored[p][l] with raw."""
    pages: int
    tokens: int
    dtype: Optional[str]
    k: Optional[list]
    v: Optional[list]
    stored: Optional[list]
    page_modes: list
    page_quants: list
    page_tiers: list
    layer_modes: list  # [page][layer]
    layer_quants: list  # [page][layer]


@dataclasses.dataclass
class AttendResult:
    covered_tokens: int
    o: np.ndarray    # [num_q_heads, v_head_dim] float32
    lse: np.ndarray  # [num_q_heads] float32


INPUTS = {"kv": (1, (ROLE_K, ROLE_V)), "x": (2, (ROLE_X,)), "latent": (3, (ROLE_LATENT,))}


def put_requests(model: Model, tokens: Sequence[int], first_page: int, mode, quant,
                 tensors: dict, chunk_bytes: int) -> Iterator[pb.PutRequest]:
    """The Put stream. `tensors` maps "k"/"v"/"x"/"latent" to per-layer tensors whose first
    dimension covers pages [first_page, len(tokens) // page_tokens). Checks the arguments
    here (InvalidArgument), before any message is sent."""
    if chunk_bytes <= 0:
        raise InvalidArgument("chunk_bytes: must be > 0")
    given = {name for name, t in tensors.items() if t is not None}
    kind = "kv" if given <= {"k", "v"} else ("x" if given == {"x"} else "latent")
    if kind == "kv" and given != {"k", "v"} or kind == "latent" and given != {"latent"}:
        raise InvalidArgument(f"tensors: give k and v, or x, or latent (got {sorted(given)})")
    input_code, roles = INPUTS[kind]
    names = {ROLE_K: "k", ROLE_V: "v", ROLE_X: "x", ROLE_LATENT: "latent"}
    pt = model.page_tokens
    pages = max(len(tokens) // pt - first_page, 0)
    layers = {}
    for role in roles:
        per_layer = tensors[names[role]]
        if len(per_layer) != model.num_layers:
            raise InvalidArgument(f"{names[role]}: {len(per_layer)} layers, the model has "
                                  f"{model.num_layers}")
        layers[role] = []
        for l, t in enumerate(per_layer):
            try:
                flat, code, shape = T.to_bytes(t)
            except ValueError as e:
                raise InvalidArgument(f"{names[role]}[{l}]: {e}") from None
            if not shape or shape[0] != pages * pt:
                raise InvalidArgument(f"{names[role]}[{l}]: {shape[0] if shape else 0} rows; pages "
                                      f"{first_page}..{first_page + pages} take {pages * pt}")
            layers[role].append((flat, code, (pt,) + tuple(shape[1:])))

    mode, quant = mode_code(mode), quant_code(quant)
    return _put_stream(model, tokens, first_page, mode, quant, input_code, roles, layers, pages,
                       chunk_bytes)


def _put_stream(model, tokens, first_page, mode, quant, input_code, roles, layers, pages,
                chunk_bytes):
    msg = pb.PutRequest()
    h = msg.header
    h.model_id = model.model_id
    h.tokens.extend(tokens)
    h.first_page = first_page
    h.mode = mode_code(mode)
    h.quant = quant_code(quant)
    h.input = input_code
    packed = 0
    for p in range(pages):
        for l in range(model.num_layers):
            for role in roles:
                flat, code, shape = layers[role][l]
                size = flat.size // pages
                # google-crc32c reads bytes only: one copy of the tensor, sliced into chunks
                # (a slice covering all of it is the same object).
                data = flat[p * size:(p + 1) * size].tobytes()
                off = 0
                while off < size:
                    n = min(chunk_bytes - packed, size - off)
                    c = msg.chunks.add()
                    c.page = first_page + p
                    c.layer = l
                    c.role = role
                    if off == 0:
                        c.header.dtype = code
                        c.header.shape.extend(shape)
                        c.header.crc32c = google_crc32c.value(data)
                    c.offset = off
                    c.data = data[off:off + n]
                    off += n
                    packed += n
                    if packed >= chunk_bytes:
                        yield msg
                        msg = pb.PutRequest()
                        packed = 0
    if packed > 0 or msg.HasField("header"):
        yield msg


# A sink for Get: direct(page_index, layer, role, dtype_code, nbytes) returns a flat writable
# uint8 numpy view where the tensor's bytes may be written as they arrive, or None; then
# store(page_index, layer, role, array) receives the finished tensor ([page_tokens, h, d] numpy
# of its dtype) unless it went to a direct view.
class Sink:
    def direct(self, page: int, layer: int, role: int, code: int, nbytes: int):
        return None

    def store(self, page: int, layer: int, role: int, array: np.ndarray, code: int) -> None:
        raise NotImplementedError

    def dtype(self) -> int:
        """The DType to ask the daemon for (0: as stored)."""
        return 0


class ArraySink(Sink):
    """Per-layer numpy arrays [pages·page_tokens, h, d], allocated on the first tensor."""

    def __init__(self, model: Model, dtype: int):
        self.model, self.code = model, dtype
        self.k = self.v = None

    def dtype(self):
        return self.code

    def allocate(self, pages: int, code: int):
        m = self.model
        if self.code == 0:
            self.code = code
        np_dtype = T.NUMPY[self.code]
        rows = pages * m.page_tokens
        self.k = [np.empty((rows,) + m.shape(ROLE_K)[1:], np_dtype) for _ in range(m.num_layers)]
        self.v = [np.empty((rows,) + m.shape(ROLE_V)[1:], np_dtype) for _ in range(m.num_layers)]

    def _slot(self, page, layer, role):
        pt = self.model.page_tokens
        return (self.k if role == ROLE_K else self.v)[layer][page * pt:(page + 1) * pt]

    def direct(self, page, layer, role, code, nbytes):
        if code != self.code:
            return None
        return self._slot(page, layer, role).reshape(-1).view(np.uint8)

    def store(self, page, layer, role, array, code):
        self._slot(page, layer, role)[...] = T.convert(array, code, self.code)


class GetAssembler:
    """Consumes a Get stream; raises DataLoss on a malformed stream or a CRC mismatch."""

    def __init__(self, model: Model, tokens: Sequence[int], first_page: int, raw: bool,
                 sink: Optional[Sink]):
        self.model, self.first_page, self.raw, self.sink = model, first_page, raw, sink
        whole = len(tokens) // model.page_tokens
        self.asked = whole - min(first_page, whole)
        self.header = None
        self.complete: list[int] = []
        self.stored: list[list[StoredLayer]] = []
        # The tensor being received: [key, want_crc, crc, nbytes, received, view or buffer, dtype,
        # shape, mode, quant, wrote_direct].
        self.cur = None
        self.dtype_seen = 0

    def feed(self, msg) -> None:
        m = self.model
        if msg.HasField("header"):
            h = msg.header
            n = h.pages
            if (self.header is not None or n > self.asked or len(h.page_tiers) != n
                    or len(h.page_modes) != n or len(h.page_quants) != n
                    or len(h.layer_modes) != n * m.num_layers):
                raise DataLoss("get: malformed response header")
            self.header = h
            self.complete = [0] * n
            self.stored = [[] for _ in range(n)]
        for c in msg.chunks:
            self._chunk(c)

    def _chunk(self, c) -> None:
        m = self.model
        idx = c.page - self.first_page
        role_ok = c.role == ROLE_STORED if self.raw else c.role in (ROLE_K, ROLE_V)
        if (self.header is None or idx < 0 or idx >= len(self.complete)
                or c.layer >= m.num_layers or not role_ok):
            raise DataLoss(f"get: chunk for page {c.page} layer {c.layer} out of range")
        key = (idx, c.layer, c.role)
        if c.offset == 0:
            if not c.HasField("header") or (self.cur is not None and self.cur[4] != self.cur[3]):
                raise DataLoss(f"get: tensor of page {c.page} layer {c.layer} starts without "
                               "its header or before the previous one ended")
            hd = c.header
            code = hd.dtype
            if self.raw:
                nbytes = hd.bytes
                buf, direct = np.empty(nbytes, np.uint8), True
            else:
                if code not in T.SIZE:
                    raise DataLoss(f"get: dtype {code} in page {c.page} layer {c.layer}")
                shape = m.shape(c.role)
                nbytes = int(np.prod(shape)) * T.SIZE[code]
                if isinstance(self.sink, ArraySink) and self.sink.k is None:
                    self.sink.allocate(len(self.complete), code)  # dtype: asked for, else page 0's
                view = self.sink.direct(idx, c.layer, c.role, code, nbytes)
                direct = view is not None
                buf = view if direct else np.empty(nbytes, np.uint8)
            self.cur = [key, hd.crc32c, 0, nbytes, 0, buf, code, tuple(hd.shape), hd.mode,
                        hd.quant, direct]
        cur = self.cur
        if cur is None or cur[0] != key or c.offset != cur[4] or len(c.data) > cur[3] - cur[4]:
            raise DataLoss(f"get: chunk of page {c.page} layer {c.layer} out of order or outside "
                           "its tensor")
        n = len(c.data)
        cur[5][cur[4]:cur[4] + n] = np.frombuffer(c.data, np.uint8)
        cur[2] = google_crc32c.extend(cur[2], c.data)
        cur[4] += n
        if cur[4] == cur[3]:
            if cur[2] != cur[1]:
                raise DataLoss(f"get: CRC32C mismatch in page {c.page} layer {c.layer}")
            self._finish(idx, c.layer, c.role, cur)

    def _finish(self, idx, layer, role, cur) -> None:
        buf, code = cur[5], cur[6]
        if self.raw:
            if layer != len(self.stored[idx]):
                raise DataLoss(f"get: stored layer {layer} of page {idx} out of order")
            self.stored[idx].append(StoredLayer(MODE_NAMES.get(cur[8], str(cur[8])),
                                                QUANT_NAMES.get(cur[9], str(cur[9])),
                                                T.NAMES.get(code, str(code)), cur[7], buf))
        elif not cur[10]:
            arr = buf.view(T.NUMPY[code]).reshape(self.model.shape(role))
            self.sink.store(idx, layer, role, arr, code)
        self.complete[idx] += 1

    def result(self) -> GetResult:
        m = self.model
        if self.header is None:
            raise DataLoss("get: the stream ended without a header")
        per_page = (1 if self.raw else 2) * m.num_layers
        whole = 0
        while whole < len(self.complete) and self.complete[whole] == per_page:
            whole += 1
        for i in range(whole, len(self.complete)):
            if self.complete[i]:
                raise DataLoss(f"get: page {self.first_page + i} arrived with {self.complete[i]} "
                               f"of {per_page} tensors")
        h = self.header
        L = m.num_layers
        layer_modes = [[MODE_NAMES.get(x, x) for x in h.layer_modes[p * L:(p + 1) * L]]
                       for p in range(whole)]
        lq = list(getattr(h, "layer_quants", []))
        layer_quants = ([[QUANT_NAMES.get(x, x) for x in lq[p * L:(p + 1) * L]] for p in range(whole)]
                        if len(lq) == len(h.layer_modes) else
                        [[QUANT_NAMES.get(h.page_quants[p], "none")] * L for p in range(whole)])
        k = v = None
        dtype = None
        if isinstance(self.sink, ArraySink) and self.sink.k is not None:
            rows = whole * m.page_tokens
            k = [a[:rows] for a in self.sink.k]
            v = [a[:rows] for a in self.sink.v]
            dtype = T.NAMES[self.sink.code]
        elif self.sink is not None and self.sink.dtype():
            dtype = T.NAMES[self.sink.dtype()]
        return GetResult(whole, whole * m.page_tokens, dtype, k, v,
                         self.stored[:whole] if self.raw else None,
                         [MODE_NAMES.get(x, x) for x in h.page_modes[:whole]],
                         [QUANT_NAMES.get(x, x) for x in h.page_quants[:whole]],
                         [TIER_NAMES.get(x, x) for x in h.page_tiers[:whole]],
                         layer_modes, layer_quants)


def attend_request(model: Model, layer: int, sequences, q_dtype=None) -> pb.AttendRequest:
    """sequences: (tokens, q) pairs, q [num_q_heads, head_dim] float32/fp16/bf16 (numpy or
    torch); q_dtype defaults to the first q's dtype."""
    req = pb.AttendRequest(model_id=model.model_id, layer=layer)
    for tokens, q in sequences:
        flat, code, _ = T.to_bytes(q)
        if req.q_dtype == 0:
            req.q_dtype = T.dtype_code(q_dtype) if q_dtype is not None else code
        if code != req.q_dtype:
            raise InvalidArgument(f"sequences.q: every q must be {T.NAMES[req.q_dtype]}")
        req.sequences.add(tokens=list(tokens), q=flat.tobytes())
    return req


def attend_results(model: Model, resp) -> list[AttendResult]:
    out = []
    for r in resp.results:
        out.append(AttendResult(r.covered_tokens,
                                np.asarray(r.o, np.float32).reshape(model.num_q_heads, -1),
                                np.asarray(r.lse, np.float32)))
    return out
