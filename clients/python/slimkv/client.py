"""slimkv.Client: the synchronous client. Thread-safe (one gRPC channel; calls may be made from
several threads). Every call has a deadline (the client's `deadline`, or `timeout=`) and raises
a slimkv.Error subclass on failure."""
from __future__ import annotations

import time
from typing import Optional, Sequence

import grpc

from . import _factors
from . import _wire as W
from ._calls import TLS, _Calls, _FactorsWait
from .errors import from_rpc_error
from .v1 import admin_pb2, cache_pb2 as pb


class Client(_Calls):
    def __init__(self, target: str = "127.0.0.1:50551", **kw):
        super().__init__(target, **kw)
        if self._tls is not None:
            self._channel = grpc.secure_channel(target, self._tls.credentials(), self._options)
        else:
            self._channel = grpc.insecure_channel(target, self._options)
        self._stubs(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, fn, req, timeout=None):
        try:
            return fn(req, **self._kw(timeout))
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    # --- Cache -----------------------------------------------------------------------------

    def register(self, model_dir=None, *, config_json=None, page_tokens: int = 16,
                 wait_for_factors: bool | float = False, timeout: Optional[float] = None) -> W.Model:
        """Registers a model (idempotent) from a directory on the daemon's host or config.json
        text/dict. wait_for_factors: True (or a number of seconds, default 600) re-registers until
        the derived matrices are no longer pending; DeadlineExceeded if they still are then."""
        req = self._register_request(model_dir, config_json, page_tokens)
        model = W.Model.from_response(self._call(self._cache.RegisterModel, req, timeout))
        wait = _FactorsWait(wait_for_factors)
        while (pause := wait.next_pause(model)) is not None:
            time.sleep(pause)
            model = W.Model.from_response(self._call(self._cache.RegisterModel, req, timeout))
        return model

    def lookup(self, model, tokens: Sequence[int], *, timeout=None) -> pb.LookupResponse:
        return self._call(self._cache.Lookup, self._tokens_request(pb.LookupRequest, model, tokens),
                          timeout)

    def put(self, model: W.Model, tokens: Sequence[int], *, k=None, v=None, x=None, latent=None,
            first_page: int = 0, mode=None, quant=None, timeout=None) -> pb.PutResponse:
        """Stores pages [first_page, len(tokens)//page_tokens). k, v (or x, or latent): one tensor
        per layer, [pages·page_tokens, h_kv, d_h] (x: [.., hidden], latent: [.., latent_dim]),
        numpy (uint16 = bf16 bits) or torch, fp32/fp16/bf16. mode: "full", "slim", "xcache",
        "latent" (None: the tenant's policy); quant: "none", "fp8", "int8", "int4"."""
        reqs = W.put_requests(model, tokens, first_page, mode, quant,
                              {"k": k, "v": v, "x": x, "latent": latent}, self.chunk_bytes)
        return self._call(self._cache.Put, reqs, timeout)

    def get(self, model: W.Model, tokens: Sequence[int], *, first_page: int = 0, dtype=None,
            raw: bool = False, into=None, timeout=None) -> W.GetResult:
        """Pages from first_page up to the first one not stored. Without into=: per-layer numpy
        arrays (dtype: "fp32", "fp16", "bf16"; None: as stored). into=: a slimkv.layouts target
        (per-layer tensors, or a paged cache); the bytes land there and nowhere else. raw=True:
        each layer's stored bytes (GetResult.stored)."""
        req, asm = self._get_setup(model, tokens, first_page, dtype, raw, into)  # a _GetState
        call = None
        try:
            call = self._cache.Get(req, **self._kw(timeout))
            for msg in call:
                asm.feed(msg)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        except BaseException:
            if call is not None:
                call.cancel()
            raise
        return asm.result()

    def delete(self, model, tokens: Sequence[int], *, first_page: int = 0, timeout=None) -> int:
        req = self._tokens_request(pb.DeleteRequest, model, tokens, first_page=first_page)
        return self._call(self._cache.Delete, req, timeout).pages_deleted

    def explain(self, model, tokens: Sequence[int], *, timeout=None) -> pb.ExplainResponse:
        return self._call(self._cache.Explain,
                          self._tokens_request(pb.ExplainRequest, model, tokens), timeout)

    def stats(self, *, timeout=None) -> pb.StatsResponse:
        return self._call(self._cache.Stats, pb.StatsRequest(), timeout)

    def attend(self, model: W.Model, layer: int, sequences, *, q_dtype=None,
               timeout=None) -> list[W.AttendResult]:
        """Decode attention on the stored pages. sequences: (tokens, q) pairs, q
        [num_q_heads, head_dim]. Returns per sequence covered_tokens, o and lse."""
        resp = self._call(self._cache.Attend, W.attend_request(model, layer, sequences, q_dtype),
                          timeout)
        return W.attend_results(model, resp)

    def layer_factors(self, model: W.Model, layer: int, mode, *, dtype="fp32", timeout=None):
        """The matrices engine-side reconstruction of `mode` needs for `layer` (GetLayerFactors):
        a dict name -> float32 numpy array."""
        req = _factors.factors_request(model, layer, mode, dtype)
        asm = _factors.FactorsAssembler()
        try:
            for msg in self._cache.GetLayerFactors(req, **self._kw(timeout)):
                asm.feed(msg)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return asm.result()

    # --- Admin (admin token) ---------------------------------------------------------------

    def list_tenants(self, *, timeout=None) -> admin_pb2.ListTenantsResponse:
        return self._call(self._admin.ListTenants, admin_pb2.ListTenantsRequest(), timeout)

    def set_tenant(self, tenant: str, *, policy=None, quotas=None, reset: bool = False,
                   timeout=None) -> admin_pb2.SetTenantResponse:
        """policy: a TenantPolicy or dict (mode, quant by name; error_tolerance); quotas: a
        TenantQuotas or dict (host_quota_bytes, disk_quota_bytes, over_quota)."""
        return self._call(self._admin.SetTenant,
                          self._set_tenant_request(tenant, policy, quotas, reset), timeout)

    def reset_tenant(self, tenant: str, *, timeout=None) -> admin_pb2.SetTenantResponse:
        return self.set_tenant(tenant, reset=True, timeout=timeout)


__all__ = ["Client", "TLS"]
