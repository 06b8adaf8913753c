"""Bad inputs: each raises the slimkv.Error subclass of its gRPC code, the message names the field,
and the store is unchanged."""
import numpy as np
import pytest

import slimkv
from slimkv import _wire
from helpers import llama_truth


def _store(client, llama, tokens):
    s = client.stats().tenants[0]
    return (s.pages, s.stored_bytes, client.lookup(llama, tokens).hit_tokens)


def _corrupt_crc(client, llama, tokens, k, v):
    reqs = list(_wire.put_requests(llama, tokens, 0, "full", "none", {"k": k, "v": v},
                                   client.chunk_bytes))
    reqs[0].chunks[0].header.crc32c ^= 1
    try:
        client._cache.Put(iter(reqs), **client._kw())
    except slimkv.errors.grpc.RpcError as e:
        raise slimkv.errors.from_rpc_error(e) from None


def _cases(client, llama, spec, tokens, k, v):
    bad_id = "ab" * 32
    q = np.zeros((llama.num_q_heads, llama.head_dim), np.float32)
    return [
        ("unknown model", slimkv.NotFound, "model",
         lambda: client.lookup(bad_id, tokens)),
        ("non-hex model_id", slimkv.InvalidArgument, "model_id",
         lambda: client.lookup("not-hex!", tokens)),
        ("put: tokens not whole pages", slimkv.InvalidArgument, "tokens",
         lambda: client.put(llama, tokens[:20], k=[a[:16] for a in k], v=[a[:16] for a in v])),
        ("put: wrong K shape", slimkv.InvalidArgument, "shape",
         lambda: client.put(llama, tokens, k=[a.reshape(32, 2, 32) for a in k], v=v)),
        ("put: first_page past the tokens", slimkv.InvalidArgument, "first_page",
         lambda: client.put(llama, tokens, first_page=3, k=[a[:0] for a in k], v=[a[:0] for a in v])),
        ("put: CRC mismatch", slimkv.DataLoss, "crc",
         lambda: _corrupt_crc(client, llama, tokens, k, v)),
        ("put: latent input to a non-MLA model", slimkv.FailedPrecondition, "input",
         lambda: client.put(llama, tokens, latent=[np.zeros((32, 8), np.float32)] * 2)),
        ("put: fp64 K", slimkv.InvalidArgument, "k[0]",
         lambda: client.put(llama, tokens, k=[a.astype(np.float64) for a in k], v=v)),
        ("register: page_tokens not a power of two", slimkv.InvalidArgument, "page_tokens",
         lambda: client.register(config_json=spec.config(), page_tokens=3)),
        ("register: relative model_dir", slimkv.InvalidArgument, "model_dir",
         lambda: client.register("relative/dir")),
        ("register: missing model_dir", slimkv.NotFound, "model_dir",
         lambda: client.register("/nonexistent/model")),
        ("register: bad config_json", slimkv.InvalidArgument, "config",
         lambda: client.register(config_json="{not json")),
        ("attend: layer out of range", slimkv.InvalidArgument, "layer",
         lambda: client.attend(llama, 99, [(tokens, q)])),
        ("attend: q of the wrong size", slimkv.InvalidArgument, "sequences[0].q",
         lambda: client.attend(llama, 0, [(tokens, q[:2])])),
        ("attend: non-finite q", slimkv.InvalidArgument, "sequences[0].q",
         lambda: client.attend(llama, 0, [(tokens, np.full_like(q, np.nan))])),
        ("attend: no sequences", slimkv.InvalidArgument, "sequences",
         lambda: client.attend(llama, 0, [])),
        ("get: too many tokens", slimkv.InvalidArgument, "tokens",
         lambda: client.get(llama, [1] * ((1 << 20) + 16))),
        ("set_tenant: unknown tenant", slimkv.NotFound, "tenant",
         lambda: client.set_tenant("nobody", policy={"mode": "slim"})),
        ("set_tenant: bad tolerance", slimkv.InvalidArgument, "error_tolerance",
         lambda: client.set_tenant("default", policy={"error_tolerance": -1.0})),
    ]


def test_bad_inputs(client, llama, llama_spec):
    tokens, k64, v64 = llama_truth(llama_spec, 9000, pages=2)
    k = [a.astype(np.float32) for a in k64]
    v = [a.astype(np.float32) for a in v64]
    client.put(llama, tokens[:16], k=[a[:16] for a in k], v=[a[:16] for a in v])  # page 0 stored
    before = _store(client, llama, tokens)
    assert before[2] == 16
    cases = _cases(client, llama, llama_spec, tokens, k, v)
    assert len(cases) >= 12
    failures = []
    for name, exc, field, call in cases:
        try:
            call()
            failures.append(f"{name}: no error")
            continue
        except exc as e:
            msg = e.message if isinstance(e, slimkv.Error) else str(e)
            if field.lower() not in msg.lower():
                failures.append(f"{name}: message {msg!r} does not name {field!r}")
        except Exception as e:  # noqa: BLE001 - the table reports every mismatch at once
            failures.append(f"{name}: raised {type(e).__name__}: {e}")
        if _store(client, llama, tokens) != before:
            failures.append(f"{name}: the store changed")
    assert not failures, "\n".join(failures)
    client.delete(llama, tokens)


def test_error_carries_code(client):
    with pytest.raises(slimkv.NotFound) as e:
        client.lookup("cd" * 32, [1] * 16)
    assert e.value.code == slimkv.errors.grpc.StatusCode.NOT_FOUND
    assert isinstance(e.value, slimkv.Error)


def test_deadline_on_every_call():
    """A server that accepts TCP and never answers: each call ends at the client's deadline."""
    import socket
    import time
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with slimkv.Client(f"127.0.0.1:{silent.getsockname()[1]}", deadline=0.3) as c:
            for call in (c.stats, lambda: c.lookup("ab" * 32, [1] * 16),
                         lambda: c.get(slimkv.Model("ab" * 32, 16, 1, 8, 1, 1, 8, 8, 0, 1, 0,
                                                    "llama", "ready"), [1] * 16)):
                t0 = time.monotonic()
                with pytest.raises(slimkv.DeadlineExceeded):
                    call()
                assert time.monotonic() - t0 < 5
