"""BN254 threshold BLS, committee, key generation, attester daemon."""
