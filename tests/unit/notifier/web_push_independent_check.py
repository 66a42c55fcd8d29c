#!/usr/bin/env python3
"""Checks our Web Push output with independent implementations: http-ece decrypts the body with
the device's keys (RFC 8291 aes128gcm) and py-vapid verifies the VAPID header (RFC 8292).
Test-only packages from PyPI (pip install http-ece py-vapid); without them the test is skipped
(exit 77, ctest SKIP_RETURN_CODE).
Usage: web_push_independent_check.py PATH_TO_web_push_sample"""
import base64
import json
import subprocess
import sys
import time

try:
    import http_ece
    from cryptography.hazmat.primitives.asymmetric import ec
    from py_vapid import Vapid02
except ImportError as e:
    print(f"SKIPPED: {e} (pip install http-ece py-vapid)")
    sys.exit(77)


def b64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def main():
    sample = json.loads(subprocess.run([sys.argv[1]], check=True, capture_output=True,
                                       text=True).stdout)
    body = b64(sample["body"])
    private = ec.derive_private_key(int.from_bytes(b64(sample["ua_private"]), "big"),
                                    ec.SECP256R1())
    plain = http_ece.decrypt(body, private_key=private, auth_secret=b64(sample["auth"]),
                             version="aes128gcm")
    assert plain == sample["plaintext"].encode(), plain
    assert len(body) == 86 + 256 + 16, len(body)
    # A wrong auth secret must not decrypt.
    try:
        http_ece.decrypt(body, private_key=private, auth_secret=b"\0" * 16, version="aes128gcm")
        raise AssertionError("decrypted with a wrong auth secret")
    except AssertionError:
        raise
    except Exception:
        pass

    header = sample["authorization"]
    assert Vapid02.verify(header), "py-vapid refused the VAPID header"
    token = header.split("t=", 1)[1].split(",", 1)[0]
    claims = json.loads(b64(token.split(".")[1]))
    assert claims["aud"] == sample["audience"], claims
    assert claims["sub"] == "mailto:ops@example.org", claims
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600, claims
    # A tampered signature must not verify.
    t_end = header.index(",k=")
    bad = header[:t_end - 2] + ("A" if header[t_end - 2] != "A" else "B") + header[t_end - 1:]
    try:
        ok = Vapid02.verify(bad)
    except Exception:
        ok = False
    assert not ok, "py-vapid accepted a tampered signature"
    print("http-ece decrypted the wake-up; py-vapid verified the VAPID header")


main()
