#!/usr/bin/python3
# vigil bench: the anchor figures for bench_ima and bench_quote_verify, measured on Keylime
# itself with exactly the inputs they generated (`bench_ima 100000 3 DIR` and
# `bench_quote_verify --dump DIR`). Keylime is not part of vigil: point
# PYTHONPATH at an existing Keylime checkout (see ../shared/reference/keylime.md §10) and run
# with Debian's python3, which has Keylime's dependencies:
#
#   PYTHONPATH=/path/to/keylime KEYLIME_TEST=True /usr/bin/python3 bench/keylime_anchor.py DIR
#
# Prints one JSON object per line, in bench_ima's shape.
import json
import os
import sys
import time


def best_of(n, fn):
    best = None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        t = time.perf_counter() - t0
        best = t if best is None or t < best else best
    return best, result


def quote_anchor(d):
    """Keylime's tpm_util.checkquote (AK PEM load, signature, nonce, pcrDigest) per quote."""
    import base64

    from keylime.tpm import tpm_util

    for name in ("ecdsa-p256", "rsassa-2048"):
        path = os.path.join(d, f"quote-{name}.txt")
        if not os.path.exists(path):
            continue
        with open(path, encoding="ascii") as f:
            quote = f.read().strip()
        with open(os.path.join(d, f"nonce-{name}.txt"), encoding="ascii") as f:
            nonce = f.read().strip()
        with open(os.path.join(d, f"ak-{name}.pem"), "rb") as f:
            ak_pem = f.read()
        attest, sig, pcrblob = (base64.b64decode(p) for p in quote[1:].split(":"))
        n = 2000

        def run():
            for _ in range(n):
                tpm_util.checkquote(ak_pem, nonce, sig, attest, pcrblob, "sha256")

        t, _ = best_of(3, run)
        print(json.dumps({"bench": "keylime_quote_verify", "key": name,
                          "us_per_quote": round(t * 1e6 / n, 1),
                          "keylime": "tpm_util.checkquote"}))


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: keylime_anchor.py DIR [REPEATS]  (DIR from `bench_ima N R DIR`)")
    d = sys.argv[1]
    quote_anchor(d)
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.environ.setdefault("KEYLIME_TEST", "True")

    from keylime.common.algorithms import Hash
    from keylime.ima import ima

    with open(os.path.join(d, "runtime_policy.json"), encoding="utf-8") as f:
        policy_text = f.read()
    with open(os.path.join(d, "ascii_runtime_measurements"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(os.path.join(d, "pcr10.sha1"), encoding="ascii") as f:
        pcr_sha1 = f.read().strip()
    with open(os.path.join(d, "pcr10.sha256"), encoding="ascii") as f:
        pcr_sha256 = f.read().strip()

    # What Keylime's verifier does with the policy on every poll (invoke_get_quote).
    t_load, policy = best_of(repeats, lambda: ima.deserialize_runtime_policy(policy_text))
    t_schema, _ = best_of(1, lambda: ima.validate_runtime_policy(policy))
    print(json.dumps({"bench": "keylime_ima_policy_load", "entries": len(policy["digests"]),
                      "bytes": len(policy_text), "ms": round(t_load * 1e3, 1),
                      "schema_validation_ms": round(t_schema * 1e3, 1),
                      "keylime": "deserialize_runtime_policy (json.loads) per poll"}))

    for bank, pcr, alg in (("sha256", pcr_sha256, Hash.SHA256), ("sha1", pcr_sha1, Hash.SHA1)):
        def run():
            return ima.process_measurement_list(None, lines, policy, pcrval=pcr, hash_alg=alg)

        t, (_, failure) = best_of(repeats, run)
        if failure:
            sys.exit(f"Keylime refused the log on the {bank} bank: {failure.get_event_ids()}")
        print(json.dumps({"bench": "keylime_ima_verify", "entries": len(lines),
                          "policy_entries": len(policy["digests"]), "bank": bank,
                          "us_per_entry": round(t * 1e6 / len(lines), 3),
                          "ms": round(t * 1e3, 1)}))


if __name__ == "__main__":
    main()
