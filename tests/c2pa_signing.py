"""Content Credentials for test images: a throw-away CA and signing certificate (made here with
``cryptography``) and a signer that embeds a C2PA manifest into PNG bytes, as OpenAI's image
service does into every image it returns. For tests only; src/ only reads credentials."""

from __future__ import annotations

import datetime
import io
import json

ISSUER = "synthlora Test Issuer"
GENERATOR = "Stand-in Image Service"


def _certificates():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, ISSUER)])

    def usage(ca: bool):
        return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject, issuer, key, signing_key, ca: bool):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(usage(ca), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        if not ca:  # C2PA wants an end-entity certificate with a signing purpose, issued by a CA
            b = (b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                 .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                                critical=False))
        return b.sign(signing_key, hashes.SHA256())

    ca = cert(name("synthlora Test CA"), name("synthlora Test CA"), ca_key, ca_key, True)
    leaf = cert(name("synthlora Test Signer"), ca.subject, leaf_key, ca_key, False)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return pem(leaf) + pem(ca), key


_CHAIN = None


def sign_png(raw: bytes) -> bytes:
    """``raw`` (PNG bytes) with a signed C2PA manifest: created by a trained algorithm."""
    import c2pa

    global _CHAIN
    if _CHAIN is None:
        _CHAIN = _certificates()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, _CHAIN[0], _CHAIN[1], None))
    manifest = {"claim_generator_info": [{"name": GENERATOR, "version": "1.0"}], "title": "image.png",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [{
                    "action": "c2pa.created",
                    "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"}]}}]}
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, "image/png", io.BytesIO(raw), out)
    return out.getvalue()
