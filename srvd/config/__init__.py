"""YAML configuration → frozen, validated model.

The package by concern, each module importing only those before it:

- ``model``: the frozen dataclasses (Config, ZoneSettings, RRsetSpec, the settings, Problem,
  ConfigError), plain data;
- ``yamlfile``: reading one file, YAML or JSON (anchors, aliases and duplicate keys refused), and
  finding the line of a key path on the error path;
- ``reader``: the validation helpers, which collect every problem with its file and key path;
- ``transfer``: the ``transfer:`` and ``catalog:`` keys (srvd as a hidden primary);
- ``load``: ``load_config``, the main file, its includes and their sections.

What the rest of srvd uses is importable from here.
"""

from srvd.config.load import load_config, template_overhead
from srvd.config.model import (
    DEFAULT_CONTROL,
    DEFAULT_METRICS,
    MAX_WORKERS,
    METRICS_PORT,
    Config,
    ConfigError,
    DomainOverride,
    Endpoint,
    Entries,
    KeyPath,
    LimitSettings,
    Problem,
    Profile,
    RrlSettings,
    RRsetSpec,
    SrvRecord,
    TcpSettings,
    TransferSettings,
    UdpSettings,
    ZoneSettings,
    parse_endpoint,
)

__all__ = [
    "DEFAULT_CONTROL",
    "DEFAULT_METRICS",
    "MAX_WORKERS",
    "METRICS_PORT",
    "Config",
    "ConfigError",
    "DomainOverride",
    "Endpoint",
    "Entries",
    "KeyPath",
    "LimitSettings",
    "Problem",
    "Profile",
    "RRsetSpec",
    "RrlSettings",
    "SrvRecord",
    "TcpSettings",
    "TransferSettings",
    "UdpSettings",
    "ZoneSettings",
    "load_config",
    "parse_endpoint",
    "template_overhead",
]
