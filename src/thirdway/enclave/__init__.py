"""The verifier enclave: the verifier in its own process, attested and signing every verdict.

Deliberately empty of imports: the enclave process starts from this package, and everything it
loads after start-up is hashed into its measurement through a measuring import hook
(:mod:`thirdway.enclave.measure`). Import the parts from their modules:

* :mod:`thirdway.enclave.client` — ``EnclaveClient`` (spawn, handshake, ``verify``, restart);
* :mod:`thirdway.enclave.attestation` — ``Attestation``, ``Measurement``, ``verify_attestation``,
  ``expected_measurement``;
* :mod:`thirdway.enclave.verdicts` — ``SignedVerdict``, ``check_signed_verdict``;
* :mod:`thirdway.enclave.allowlist` — ``MeasurementAllowList`` (operator-accepted measurements);
* :mod:`thirdway.enclave.tsm` — Linux configfs-tsm hardware quotes;
* :mod:`thirdway.enclave.wire` — length-prefixed RFC 8785 frames;
* :mod:`thirdway.enclave.bench` — round trip versus the in-process verifier.
"""
