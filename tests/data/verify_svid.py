#!/usr/bin/env python3
"""Verify a Warden X509-SVID chain with pyca/cryptography, independently of Rust.

Usage: verify_svid.py CA_CRT ISSUER_CRT LEAF_CRT [--at UNIX_SECONDS] [--signatures-only]

CA_CRT holds the trust anchors (one or more PEM certificates), ISSUER_CRT the issuer chain
(issuer first, as Sentry's issuer.crt), LEAF_CRT the workload certificate (only its first PEM
block is used). The script

1. checks the leaf's signature with the issuer's key and the issuer's with an anchor's key
   (``Certificate.verify_directly_issued_by``: name linkage plus signature, nothing else);
2. builds and validates the path with cryptography's RFC 5280 / CABF-style verifier
   (``PolicyBuilder().store(Store(...)).time(...).build_client_verifier()``), at --at or now;
3. prints the single URI SAN of the verified client (the SPIFFE ID) on stdout.

With --signatures-only, step 2 is skipped and the URI SAN is read from the leaf directly. That
mode exists for Ed25519 CAs: cryptography's verifier applies the CA/Browser Forum profile, whose
public key allow-list (RSA, ECDSA P-256/384/521) refuses Ed25519 CA keys with "Forbidden public
key algorithm", while ``verify_directly_issued_by`` does support Ed25519.

Any failure is reported on stderr with exit status 1; bad usage or a too-old cryptography
exits with status 2.

Requires cryptography >= 43.0.0, the first release with ``PolicyBuilder.build_client_verifier``
(the client verifier returns the leaf's SANs). On 2026-11-28 pip offered 35.0.0 ... 50.0.2
(``pip index versions cryptography``); the Rust tests pass with 43.0.0, 48.0.0 and 50.0.2, and
all three refuse Ed25519 CA keys in path validation.
"""

import argparse
import datetime
import sys
import typing

MIN_CRYPTOGRAPHY = (43, 0)


def fail(message: str, status: int = 1) -> typing.NoReturn:
    print(f"verify_svid.py: {message}", file=sys.stderr)
    sys.exit(status)


try:
    import cryptography
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
except ImportError as e:  # pragma: no cover - environment problem
    fail(f"cannot import cryptography ({e}); run scripts/test.sh to install it", 2)

_version = tuple(int(p) for p in cryptography.__version__.split(".")[:2] if p.isdigit())
if _version < MIN_CRYPTOGRAPHY:
    fail(
        f"cryptography {cryptography.__version__} is too old, need >= "
        f"{'.'.join(map(str, MIN_CRYPTOGRAPHY))}; run scripts/test.sh",
        2,
    )


def load_all(path: str) -> list:
    with open(path, "rb") as f:
        data = f.read()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        fail(f"{path}: no readable PEM certificates: {e}")
    if not certs:
        fail(f"{path}: no certificates")
    return certs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ca")
    parser.add_argument("issuer")
    parser.add_argument("leaf")
    parser.add_argument("--at", type=int, help="validation time, Unix seconds (default: now)")
    parser.add_argument(
        "--signatures-only",
        action="store_true",
        help="check signatures and name linkage only, not the full path policy",
    )
    args = parser.parse_args()

    anchors = load_all(args.ca)
    issuer_chain = load_all(args.issuer)
    leaf = load_all(args.leaf)[0]
    issuer = issuer_chain[0]

    # 1. Direct signature checks.
    # ValueError: issuer name mismatch; TypeError: unsupported key type; InvalidSignature.
    try:
        leaf.verify_directly_issued_by(issuer)
    except InvalidSignature:
        fail("leaf signature does not verify with the issuer key")
    except (ValueError, TypeError) as e:
        fail(f"leaf is not directly issued by the issuer: {e}")
    top = issuer_chain[-1]
    errors = []
    for anchor in anchors:
        try:
            top.verify_directly_issued_by(anchor)
            break
        except InvalidSignature:
            errors.append(f"{anchor.subject.rfc4514_string()}: bad signature")
        except (ValueError, TypeError) as e:
            errors.append(f"{anchor.subject.rfc4514_string()}: {e}")
    else:
        fail(f"no trust anchor directly issued the issuer certificate: {errors}")

    if args.signatures_only:
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            fail("leaf has no subjectAltName extension")
        print_single_uri(list(san))
        return

    # 2. Full path validation.
    if args.at is None:
        at = datetime.datetime.now(datetime.timezone.utc)
    else:
        at = datetime.datetime.fromtimestamp(args.at, tz=datetime.timezone.utc)
    verifier = PolicyBuilder().store(Store(anchors)).time(at).build_client_verifier()
    try:
        verified = verifier.verify(leaf, issuer_chain)
    except VerificationError as e:
        fail(f"path validation failed: {e}")

    # 3. The SPIFFE ID.
    print_single_uri(list(verified.subjects or []))


def print_single_uri(names: list) -> None:
    uris = [n.value for n in names if isinstance(n, x509.UniformResourceIdentifier)]
    if len(uris) != 1:
        fail(f"expected exactly one URI SAN, found {uris}")
    print(uris[0])


if __name__ == "__main__":
    main()
