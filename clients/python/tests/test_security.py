"""Bearer tokens, TLS and mutual TLS against daemons configured for them (certificates made with
openssl in a temp dir)."""
import subprocess

import pytest

import slimkv
from slimkvd import Daemon, sha256


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
                f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem", cwd=d)
    return d


def tenants(*ids):
    return "".join(f'tenants {{ id: "{t}" token_sha256: "{sha256(t + "-secret")}" }}\n' for t in ids)


def test_bearer_tokens_and_admin():
    d = Daemon(tenants("team-a") + f'admin_token_sha256: "{sha256("admin-secret")}"\n')
    try:
        with slimkv.Client(d.target, deadline=10) as anon:
            with pytest.raises(slimkv.Unauthenticated):
                anon.stats()
        with slimkv.Client(d.target, token="wrong", deadline=10) as bad:
            with pytest.raises(slimkv.Unauthenticated):
                bad.stats()
        with slimkv.Client(d.target, token="team-a-secret", deadline=10) as a:
            assert a.stats().tenants[0].tenant == "team-a"
            with pytest.raises(slimkv.PermissionDenied):
                a.list_tenants()
        with slimkv.Client(d.target, token="admin-secret", deadline=10) as admin:
            assert [t.tenant for t in admin.list_tenants().tenants] == ["team-a"]
            r = admin.set_tenant("team-a", policy={"mode": "slim", "quant": "int8",
                                                   "error_tolerance": 0.02})
            assert r.current.policy.mode == 2 and r.current.overridden
            assert not admin.reset_tenant("team-a").current.overridden
    finally:
        d.stop()


def test_tls(certs):
    d = Daemon(f'tls {{ cert_file: "{certs}/server.pem" key_file: "{certs}/server.key" }}\n')
    try:
        tls = slimkv.TLS(ca=str(certs / "ca.pem"))
        with slimkv.Client(d.target, tls=tls, deadline=10) as c:
            assert len(c.stats().tenants) == 1
        with slimkv.Client(d.target, deadline=3) as plain:
            with pytest.raises(slimkv.Unavailable):
                plain.stats()
        wrong_name = slimkv.TLS(ca=str(certs / "ca.pem"), server_name="elsewhere.example")
        with slimkv.Client(d.target, tls=wrong_name, deadline=3) as c:
            with pytest.raises(slimkv.Unavailable):
                c.stats()
    finally:
        d.stop()


def test_mutual_tls(certs):
    d = Daemon(f'tls {{ cert_file: "{certs}/server.pem" key_file: "{certs}/server.key" '
               f'client_ca_file: "{certs}/ca.pem" }}\n')
    try:
        mtls = slimkv.TLS(ca=str(certs / "ca.pem"), cert=str(certs / "client.pem"),
                          key=(certs / "client.key").read_text())
        with slimkv.Client(d.target, tls=mtls, deadline=10) as c:
            assert len(c.stats().tenants) == 1
        with slimkv.Client(d.target, tls=slimkv.TLS(ca=str(certs / "ca.pem")), deadline=3) as c:
            with pytest.raises(slimkv.Unavailable):
                c.stats()
        with pytest.raises(slimkv.InvalidArgument):
            slimkv.Client(d.target, tls=slimkv.TLS(ca=str(certs / "ca.pem"),
                                                   cert=str(certs / "client.pem")))
    finally:
        d.stop()
