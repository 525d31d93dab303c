"""C2PA signing and reading of kinema's outputs (c2pa-python, offline).

Every MP4 kinema writes is signed last, after encoding: a `c2pa.created` action with digitalSourceType
trainedAlgorithmicMedia and a `org.kinema.generation` assertion (model, version, seed, sha256 of the prompt,
watermark payload). Signing writes a temporary file beside the target and renames it, so no unsigned file
is ever left at the destination.

Credentials: set KINEMA_C2PA_CERT (PEM chain, signing certificate first), KINEMA_C2PA_KEY (PEM private key)
and optionally KINEMA_C2PA_TSA (timestamp authority URL) to sign with your own chain (ES256). Otherwise a
local CA and an ES256 signing certificate (emailProtection EKU, 10 years) are made on first use in
$KINEMA_HOME/c2pa (default ~/.config/kinema/c2pa; key files mode 0600). Reading trusts that local CA as a
user anchor, so kinema's own files read `Trusted` on the machine that made them and `Valid` (with
`signingCredential.untrusted`) elsewhere.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ASSERTION = "org.kinema.generation"
MIME = {".mp4": "video/mp4", ".png": "image/png"}


class ProvenanceError(ValueError):
    """A file could not be signed or read."""


def c2pa_home() -> Path:
    return Path(os.environ.get("KINEMA_HOME", Path.home() / ".config" / "kinema")) / "c2pa"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kinema")]
    )


def make_local_ca(folder: Path) -> None:
    """A local root CA and an end-entity signing certificate (c2pa refuses self-signed signers)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    end = now + datetime.timedelta(days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("kinema local C2PA root"))
        .issuer_name(_name("kinema local C2PA root"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kinema signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        # with c2pa's default settings only emailProtection passes the EKU check (docs/PROVENANCE.md)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    nopw = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write_private(folder / "ca.key", ca_key.private_bytes(pem, pkcs8, nopw))
    _write_private(folder / "signer.key", key.private_bytes(pem, pkcs8, nopw))
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "chain.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))


def credentials() -> tuple[bytes, bytes, str | None, bytes | None]:
    """(certificate chain, private key, timestamp URL, local CA to trust): the operator's, else the local CA."""
    cert, key = os.environ.get("KINEMA_C2PA_CERT"), os.environ.get("KINEMA_C2PA_KEY")
    tsa = os.environ.get("KINEMA_C2PA_TSA") or None
    if cert or key:
        if not (cert and key):
            raise ProvenanceError("set both KINEMA_C2PA_CERT and KINEMA_C2PA_KEY (or neither)")
        return Path(cert).read_bytes(), Path(key).read_bytes(), tsa, None
    folder = c2pa_home()
    if not (folder / "chain.pem").is_file() or not (folder / "signer.key").is_file():
        make_local_ca(folder)
    return (
        (folder / "chain.pem").read_bytes(),
        (folder / "signer.key").read_bytes(),
        tsa,
        (folder / "ca.pem").read_bytes(),
    )


def _context(anchor: bytes | None) -> c2pa.Context:
    settings: dict = {"verify": {"verify_after_sign": True}}
    if anchor is not None:
        settings["trust"] = {"user_anchors": anchor.decode()}
    return c2pa.Context.from_dict(settings)


def manifest(model: str, version: str, seed: int, prompt: str, watermark: str | None, generation_id: str) -> dict:
    """The manifest definition for one generated video (the prompt itself is never stored, only its hash)."""
    return {
        "claim_generator_info": [{"name": "kinema", "version": version}],
        "title": f"kinema generation {generation_id}",
        "assertions": [
            {
                "label": ASSERTION,
                "data": {
                    "model": model,
                    "version": version,
                    "seed": int(seed),
                    "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
                    "watermark": watermark,
                    "generation_id": generation_id,
                },
            }
        ],
    }


def sign_file(path: str | Path, definition: dict) -> Path:
    """Sign an .mp4 (or .png) in place: sign into a temp file beside it, then rename over it."""
    p = Path(path)
    mime = MIME.get(p.suffix.lower())
    if mime is None:
        raise ProvenanceError(f"C2PA signing supports {', '.join(MIME)}, not {p.suffix}")
    chain, key, tsa, anchor = credentials()
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, tsa.encode() if tsa else None)
    signer = c2pa.Signer.from_info(info)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".c2pa.tmp")
    os.close(fd)
    try:
        builder = c2pa.Builder(json.dumps(definition), _context(anchor))
        builder.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.TRAINED_ALGORITHMIC_MEDIA)
        with open(p, "rb") as src, open(tmp, "w+b") as dst:
            builder.sign(signer, mime, src, dst)
        os.chmod(tmp, os.stat(p).st_mode & 0o777)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def read_state(path: str | Path) -> dict:
    """{"state": "Trusted" | "Valid" | "Invalid" | "none", "failures": [codes], "assertion": {...} | None}."""
    p = Path(path)
    mime = MIME.get(p.suffix.lower(), "video/mp4")
    anchor = (c2pa_home() / "ca.pem").read_bytes() if (c2pa_home() / "ca.pem").is_file() else None
    try:
        with open(p, "rb") as f:
            reader = c2pa.Reader.try_create(mime, f, None, _context(anchor))
            if reader is None:
                return {"state": "none", "failures": [], "assertion": None}
            with reader:
                state = str(reader.get_validation_state())
                store = json.loads(reader.json())
    except c2pa.C2paError as e:
        if "ManifestNotFound" in type(e).__name__ or "ManifestNotFound" in str(e):
            return {"state": "none", "failures": [], "assertion": None}
        return {"state": "Invalid", "failures": [str(e).splitlines()[0]], "assertion": None}
    failures = [
        f.get("code", "") for f in store.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
    ] or [f.get("code", "") for f in store.get("validation_status", []) or []]
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    data = next((a.get("data") for a in active.get("assertions", []) if a.get("label") == ASSERTION), None)
    return {"state": state, "failures": failures, "assertion": data}
