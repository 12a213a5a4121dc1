"""Moving in: existing zones → srvd profiles (``srvd import``), and the delegations in the
parent zones (``srvd delegation``, ``srvd verify-delegation``)."""
