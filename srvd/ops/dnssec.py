"""The DNSSEC metric families (srvd.index.dnssec), built at scrape time.

``srvd_dnssec_signatures_total`` and the cache's hits, misses and evictions count what this
process did since it started (across reloads); ``srvd_dnssec_signature_expiry_earliest_seconds``
is the earliest expiration (Unix time) among the signatures sent since the previous scrape, or
the last value seen when none was sent. The alert ``SrvdDnssecSignaturesExpiring``
(config/prometheus/alerts.yml) fires when it comes within three days.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from srvd.index.dnssec import STATS, SigningStats, ZoneSigner
from srvd.index.model import Index


class DnssecCollector(Collector):
    def __init__(self, index: Callable[[], Index], stats: SigningStats = STATS) -> None:
        self.index = index
        self.stats = stats
        self.last_expiry = 0

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        signer = self.index().dnssec
        signing = isinstance(signer, ZoneSigner)
        yield GaugeMetricFamily(
            "srvd_dnssec_enabled", "1 when the served zones are signed (dnssec: key)", value=signing
        )
        yield CounterMetricFamily(
            "srvd_dnssec_signatures", "RRSIG signatures made", value=stats.signatures
        )
        yield CounterMetricFamily(
            "srvd_dnssec_cache_hits", "Signatures found in the signature cache", value=stats.hits
        )
        yield CounterMetricFamily(
            "srvd_dnssec_cache_misses",
            "Signatures not in the cache (then made)",
            value=stats.misses,
        )
        yield CounterMetricFamily(
            "srvd_dnssec_cache_evictions",
            "Signatures dropped from the full cache (first in, first out)",
            value=stats.evictions,
        )
        entries = size = pending = 0
        if isinstance(signer, ZoneSigner):
            entries, size, pending = len(signer.cache), signer.size, signer.presign_pending
            soonest = signer.take_soonest()
            if soonest is not None:
                self.last_expiry = soonest
        yield GaugeMetricFamily(
            "srvd_dnssec_cache_entries", "Signatures in the cache now", value=entries
        )
        yield GaugeMetricFamily(
            "srvd_dnssec_cache_size",
            "Signatures the cache holds at most (dnssec.cache_size)",
            value=size,
        )
        yield GaugeMetricFamily(
            "srvd_dnssec_presign_pending_zones",
            "Zones whose negative answers' signatures are still to be made ahead (while idle)",
            value=pending,
        )
        yield GaugeMetricFamily(
            "srvd_dnssec_signature_expiry_earliest_seconds",
            "Earliest expiration (Unix time) of the signatures sent since the previous scrape; "
            "0: none sent yet",
            value=self.last_expiry if signing else 0,
        )
