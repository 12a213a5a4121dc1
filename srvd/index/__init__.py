"""The index: a validated configuration built into immutable wire pieces (zones, profile tables,
SOA/NS, the catalog, serials). Imports wire and config."""
