"""slimkv: Python client for slimkvd (docs/python.md).

    import slimkv
    c = slimkv.Client("127.0.0.1:50551", token=...)
    m = c.register("/models/llama", page_tokens=256, wait_for_factors=True)
    c.put(m, tokens, k=ks, v=vs, mode="slim")
    r = c.get(m, tokens, dtype="bf16")

torch is optional: slimkv.codecs and torch tensors need it, nothing else does.
"""
from ._calls import TLS
from ._tensors import bf16_to_float32, float32_to_bf16
from ._wire import AttendResult, GetResult, Model, StoredLayer
from .client import Client
from .errors import (Aborted, AlreadyExists, Cancelled, DataLoss, DeadlineExceeded, Error,
                     FailedPrecondition, Internal, InvalidArgument, NotFound, OutOfRange,
                     PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable,
                     Unimplemented, Unknown)

__version__ = "0.1.0"
