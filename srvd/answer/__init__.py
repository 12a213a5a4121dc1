"""Query bytes to reply bytes: the lean path, the full parser, the catalog's answers and the
metrics cells of each reply. Imports wire, config and index; knows no socket, reactor or clock."""
