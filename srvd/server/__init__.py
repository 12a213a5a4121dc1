"""The running server: the responder, UDP/TCP protocols, rate limiting, workers and reloads.
Imports every layer below it (wire, config, index, answer, ops)."""
