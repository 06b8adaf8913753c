"""Tensors on the wire: numpy arrays or torch tensors in, little-endian bytes out, and back.

bfloat16 has no numpy dtype: a numpy uint16 array is read as bf16 bit patterns (the upper half
of float32), and numpy results in bf16 come back as uint16 (see bf16_to_float32). torch tensors
keep their own dtype (torch.bfloat16)."""
from __future__ import annotations

import numpy as np

FP32, FP16, BF16 = 1, 2, 3  # slimkv.v1.DType
NAMES = {FP32: "fp32", FP16: "fp16", BF16: "bf16"}
CODES = {"fp32": FP32, "float32": FP32, "fp16": FP16, "float16": FP16, "bf16": BF16,
         "bfloat16": BF16}
SIZE = {FP32: 4, FP16: 2, BF16: 2}
NUMPY = {FP32: np.float32, FP16: np.float16, BF16: np.uint16}


def is_torch(t) -> bool:
    return type(t).__module__.startswith("torch")


def dtype_code(dtype) -> int:
    """A DType code from a name ("bf16"), a numpy or torch dtype, or a code."""
    if dtype is None:
        return 0
    if isinstance(dtype, int):
        return dtype
    name = str(dtype).replace("torch.", "")
    if name in CODES:
        return CODES[name]
    if name == "uint16":
        return BF16
    raise ValueError(f"dtype {dtype!r}: want fp32, fp16 or bf16")


def tensor_code(t) -> int:
    """The DType of a numpy array or torch tensor; ValueError for any other element type."""
    return dtype_code(t.dtype)


def to_bytes(t) -> tuple[np.ndarray, int, tuple[int, ...]]:
    """(flat uint8 view or copy, DType code, shape) of a tensor; no copy for a contiguous CPU
    numpy array or torch tensor."""
    if is_torch(t):
        code = tensor_code(t)
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        shape = tuple(t.shape)
        import torch
        return t.contiguous().reshape(-1).view(torch.uint8).numpy(), code, shape
    a = np.asarray(t)
    code = tensor_code(a)
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8), code, a.shape


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bf16 bit patterns (uint16)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(x: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) of float32 values, rounded to nearest even (NaN stays NaN)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


def to_float(a, code: int | None = None) -> np.ndarray:
    """float64 numpy copy of a numpy array (uint16 read as bf16) or torch tensor."""
    if is_torch(a):
        return a.detach().cpu().double().numpy()
    a = np.asarray(a)
    if a.dtype == np.uint16 or code == BF16:
        return bf16_to_float32(a).astype(np.float64)
    return a.astype(np.float64)


def convert(src: np.ndarray, src_code: int, dst_code: int) -> np.ndarray:
    """src (numpy, of src_code's element type) converted to dst_code's element type."""
    if src_code == dst_code:
        return src
    f = bf16_to_float32(src) if src_code == BF16 else src.astype(np.float32)
    return float32_to_bf16(f) if dst_code == BF16 else f.astype(NUMPY[dst_code])
