"""GetLayerFactors on the wire: the request, and the stream's assembly with CRC32C checks."""
from __future__ import annotations

import google_crc32c
import numpy as np

from . import _tensors as T
from . import _wire as W
from .errors import DataLoss
from .v1 import cache_pb2 as pb


def factors_request(model, layer: int, mode, dtype) -> pb.GetLayerFactorsRequest:
    return pb.GetLayerFactorsRequest(model_id=W.model_id_of(model), layer=layer,
                                     mode=W.mode_code(mode), dtype=T.dtype_code(dtype))


class LayerFactors(dict):
    """name -> numpy array (float32, fp16, or uint16 bf16 bits), with `.info` (LayerFactorsInfo)."""
    info = None


class FactorsAssembler:
    def __init__(self):
        self.out = LayerFactors()
        self.cur = None  # [name, want_crc, crc, buffer, received, dtype, shape]

    def feed(self, msg) -> None:
        if msg.HasField("info"):
            if self.out.info is not None:
                raise DataLoss("factors: a second info message")
            self.out.info = msg.info
        for c in msg.chunks:
            if self.out.info is None:
                raise DataLoss("factors: a chunk before the info")
            if c.offset == 0:
                if self.cur is not None and self.cur[4] != self.cur[3].size:
                    raise DataLoss(f"factors: {self.cur[0]} ended early")
                h = c.header
                if h.dtype not in T.SIZE:
                    raise DataLoss(f"factors: {c.name} has dtype {h.dtype}")
                n = int(np.prod(h.shape)) * T.SIZE[h.dtype]
                self.cur = [c.name, h.crc32c, 0, np.empty(n, np.uint8), 0, h.dtype, tuple(h.shape)]
            cur = self.cur
            if cur is None or c.offset != cur[4] or len(c.data) > cur[3].size - cur[4]:
                raise DataLoss("factors: chunk out of order or outside its factor")
            cur[3][cur[4]:cur[4] + len(c.data)] = np.frombuffer(c.data, np.uint8)
            cur[2] = google_crc32c.extend(cur[2], c.data)
            cur[4] += len(c.data)
            if cur[4] == cur[3].size:
                if cur[2] != cur[1]:
                    raise DataLoss(f"factors: CRC32C mismatch in {cur[0]}")
                self.out[cur[0]] = cur[3].view(T.NUMPY[cur[5]]).reshape(cur[6])

    def result(self) -> LayerFactors:
        if self.out.info is None:
            raise DataLoss("factors: the stream ended without its info")
        missing = [n for n in self.out.info.names if n not in self.out]
        if missing:
            raise DataLoss(f"factors: {missing} missing")
        return self.out
