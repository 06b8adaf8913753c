"""slimkv.aio.Client: the asyncio client, with the sync client's methods as coroutines (same
arguments, results and exceptions). One per event loop."""
from __future__ import annotations

import asyncio
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
            self._channel = grpc.aio.secure_channel(target, self._tls.credentials(), self._options)
        else:
            self._channel = grpc.aio.insecure_channel(target, self._options)
        self._stubs(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _call(self, fn, req, timeout=None):
        try:
            return await fn(req, **self._kw(timeout))
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def register(self, model_dir=None, *, config_json=None, page_tokens: int = 16,
                       wait_for_factors: bool | float = False,
                       timeout: Optional[float] = None) -> W.Model:
        req = self._register_request(model_dir, config_json, page_tokens)
        model = W.Model.from_response(await self._call(self._cache.RegisterModel, req, timeout))
        wait = _FactorsWait(wait_for_factors)
        while (pause := wait.next_pause(model)) is not None:
            await asyncio.sleep(pause)
            model = W.Model.from_response(await self._call(self._cache.RegisterModel, req, timeout))
        return model

    async def lookup(self, model, tokens: Sequence[int], *, timeout=None):
        return await self._call(self._cache.Lookup,
                                self._tokens_request(pb.LookupRequest, model, tokens), timeout)

    async def put(self, model: W.Model, tokens: Sequence[int], *, k=None, v=None, x=None,
                  latent=None, first_page: int = 0, mode=None, quant=None, timeout=None):
        reqs = W.put_requests(model, tokens, first_page, mode, quant,
                              {"k": k, "v": v, "x": x, "latent": latent}, self.chunk_bytes)
        return await self._call(self._cache.Put, reqs, timeout)

    async def get(self, model: W.Model, tokens: Sequence[int], *, first_page: int = 0,
                  dtype=None, raw: bool = False, into=None, timeout=None) -> W.GetResult:
        req, state = self._get_setup(model, tokens, first_page, dtype, raw, into)
        call = self._cache.Get(req, **self._kw(timeout))
        try:
            async for msg in call:
                state.feed(msg)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        except BaseException:
            call.cancel()
            raise
        return state.result()

    async def delete(self, model, tokens: Sequence[int], *, first_page: int = 0,
                     timeout=None) -> int:
        req = self._tokens_request(pb.DeleteRequest, model, tokens, first_page=first_page)
        return (await self._call(self._cache.Delete, req, timeout)).pages_deleted

    async def explain(self, model, tokens: Sequence[int], *, timeout=None):
        return await self._call(self._cache.Explain,
                                self._tokens_request(pb.ExplainRequest, model, tokens), timeout)

    async def stats(self, *, timeout=None):
        return await self._call(self._cache.Stats, pb.StatsRequest(), timeout)

    async def attend(self, model: W.Model, layer: int, sequences, *, q_dtype=None, timeout=None):
        resp = await self._call(self._cache.Attend,
                                W.attend_request(model, layer, sequences, q_dtype), timeout)
        return W.attend_results(model, resp)

    async def layer_factors(self, model: W.Model, layer: int, mode, *, dtype="fp32",
                            timeout=None):
        asm = _factors.FactorsAssembler()
        call = self._cache.GetLayerFactors(_factors.factors_request(model, layer, mode, dtype),
                                           **self._kw(timeout))
        try:
            async for msg in call:
                asm.feed(msg)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return asm.result()

    async def list_tenants(self, *, timeout=None) -> admin_pb2.ListTenantsResponse:
        return await self._call(self._admin.ListTenants, admin_pb2.ListTenantsRequest(), timeout)

    async def set_tenant(self, tenant: str, *, policy=None, quotas=None, reset: bool = False,
                         timeout=None) -> admin_pb2.SetTenantResponse:
        return await self._call(self._admin.SetTenant,
                                self._set_tenant_request(tenant, policy, quotas, reset), timeout)

    async def reset_tenant(self, tenant: str, *, timeout=None):
        return await self.set_tenant(tenant, reset=True, timeout=timeout)


__all__ = ["Client", "TLS"]
