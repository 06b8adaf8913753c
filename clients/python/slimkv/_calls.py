"""Channel setup and the request/response halves of every RPC, shared by Client and
aio.Client (which differ only in how they wait)."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional

import grpc

from . import _wire as W
from . import _tensors as T
from .errors import DeadlineExceeded, InvalidArgument
from .v1 import admin_pb2, admin_pb2_grpc, cache_pb2 as pb, cache_pb2_grpc, config_pb2


@dataclasses.dataclass
class TLS:
    """TLS to the daemon. ca: PEM of the roots (None: the system's); cert and key: the client's
    certificate chain and key for mutual TLS; server_name: the name to check the server's
    certificate against when it differs from the target's host. Each is PEM text/bytes or a
    path to a PEM file."""
    ca: Optional[str | bytes] = None
    cert: Optional[str | bytes] = None
    key: Optional[str | bytes] = None
    server_name: Optional[str] = None

    @staticmethod
    def _pem(v):
        if v is None or isinstance(v, bytes):
            return v
        if "-----BEGIN" in v:
            return v.encode()
        with open(v, "rb") as f:
            return f.read()

    def credentials(self):
        if (self.cert is None) != (self.key is None):
            raise InvalidArgument("tls: a client certificate needs its key, and a key its certificate")
        return grpc.ssl_channel_credentials(self._pem(self.ca), self._pem(self.key),
                                            self._pem(self.cert))


class _Calls:
    """Options and request builders. target: "host:port"; token: the tenant's (or admin's)
    bearer token; deadline: seconds per call (None: none); chunk_bytes: the largest tensor
    bytes packed into one Put message (keep it under the daemon's max_message_bytes)."""

    def __init__(self, target: str = "127.0.0.1:50551", *, token: Optional[str] = None,
                 tls: Optional[TLS] = None, deadline: Optional[float] = 60.0,
                 chunk_bytes: int = 1 << 20, max_receive_message_bytes: int = 64 << 20):
        self.target, self.token, self.deadline, self.chunk_bytes = target, token, deadline, chunk_bytes
        self._options = [("grpc.max_receive_message_length", max_receive_message_bytes),
                         ("grpc.max_send_message_length", -1),
                         # Own connection per client, as the C++ client (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL).
                         ("grpc.use_local_subchannel_pool", 1)]
        if tls is not None and tls.server_name:
            self._options.append(("grpc.ssl_target_name_override", tls.server_name))
        self._tls = tls

    def _stubs(self, channel):
        self._cache = cache_pb2_grpc.CacheStub(channel)
        self._admin = admin_pb2_grpc.AdminStub(channel)

    def _kw(self, timeout: Optional[float] = None) -> dict:
        kw = {}
        t = self.deadline if timeout is None else timeout
        if t is not None:
            kw["timeout"] = t
        if self.token:
            kw["metadata"] = (("authorization", "Bearer " + self.token),)
        return kw

    @staticmethod
    def _register_request(model_dir, config_json, page_tokens) -> pb.RegisterModelRequest:
        if (model_dir is None) == (config_json is None):
            raise InvalidArgument("register: give model_dir or config_json")
        req = pb.RegisterModelRequest(page_tokens=page_tokens)
        if model_dir is not None:
            req.model_dir = os.fspath(model_dir)
        else:
            req.config_json = config_json if isinstance(config_json, str) else json.dumps(config_json)
        return req

    @staticmethod
    def _tokens_request(cls, model, tokens, **fields):
        return cls(model_id=W.model_id_of(model), tokens=list(tokens), **fields)

    def _get_setup(self, model, tokens, first_page, dtype, raw, into):
        from .layouts import Paged, sink_for  # torch-free unless into= holds torch tensors
        latent_into = isinstance(into, Paged) and into.layout == "mla"
        if latent_into:  # an MLA cache holds the stored latent itself
            into.bind(model)
            raw = True
        if raw:
            sink, code = None, T.dtype_code(dtype)
        elif into is not None:
            sink = sink_for(model, into, first_page)
            code = sink.dtype()
        else:
            sink = W.ArraySink(model, T.dtype_code(dtype))
            code = sink.dtype()
        req = pb.GetRequest(model_id=model.model_id, tokens=list(tokens), first_page=first_page,
                            dtype=code, raw=raw)
        return req, _GetState(W.GetAssembler(model, tokens, first_page, raw, sink),
                              into if latent_into else None, first_page)

    @staticmethod
    def _set_tenant_request(tenant, policy, quotas, reset) -> admin_pb2.SetTenantRequest:
        req = admin_pb2.SetTenantRequest(tenant=tenant, reset=reset)
        if policy is not None:
            req.policy.CopyFrom(policy if isinstance(policy, config_pb2.TenantPolicy)
                                else _policy(policy))
        if quotas is not None:
            req.quotas.CopyFrom(quotas if isinstance(quotas, admin_pb2.TenantQuotas)
                                else admin_pb2.TenantQuotas(**quotas))
        return req


def _policy(d: dict) -> "config_pb2.TenantPolicy":
    """A TenantPolicy from a dict; mode and quant may be names ("slim", "int8")."""
    d = dict(d)
    if "mode" in d:
        d["mode"] = W.mode_code(d["mode"])
    if "quant" in d:
        d["quant"] = W.quant_code(d["quant"])
    return config_pb2.TenantPolicy(**d)




class _FactorsWait:
    """register(wait_for_factors=...): how long to pause before registering again, None once the
    factors are no longer pending; DeadlineExceeded past the limit (True: 600 s)."""

    def __init__(self, wait_for_factors):
        self.limit = 600.0 if wait_for_factors is True else float(wait_for_factors or 0)
        self.end, self.pause = time.monotonic() + self.limit, 0.02

    def next_pause(self, model) -> Optional[float]:
        if self.limit <= 0 or model.factors != "pending":
            return None
        left = self.end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"register: factors of {model.model_id} still pending after "
                                   f"{self.limit:g} s")
        pause, self.pause = min(self.pause, left), min(self.pause * 2, 1.0)
        return pause


class _GetState:
    def __init__(self, asm, latent_into, first_page):
        self.asm, self.latent_into, self.first_page = asm, latent_into, first_page

    def feed(self, msg):
        self.asm.feed(msg)

    def result(self):
        r = self.asm.result()
        if self.latent_into is not None:
            self.latent_into.fill_latent(r, self.first_page)
        return r
