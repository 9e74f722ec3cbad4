"""Payment security primitives: PIN blocks, MACs, key handling, DUKPT (built on `cryptography`)."""
