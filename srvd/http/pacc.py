"""PACC's DNS side: the ``_ua-auto-config.<domain>`` TXT that vouches for the document
``/.well-known/user-agent-configuration.json`` serves (draft-ietf-mailmaint-pacc).

``deriver`` gives srvd.index.build.TableCache a ``derive`` hook: for a domain's planned tables it
reads the ``_tcp`` table with the very functions the HTTP side uses (srvd.http.facts,
srvd.http.documents.pacc), and adds one TXT RRset at the apex of the ``_ua-auto-config`` zone:
a fixed record when the document names no domain, else a DigestSpec that DNS completes and
hashes per domain (srvd.index.model.DigestTemplate). The document served and the digest
published come from the same bytes by construction, in every index, after every reload.
"""

from __future__ import annotations

from srvd.config.model import HttpSettings, RRsetSpec
from srvd.http import documents
from srvd.http.facts import table_facts
from srvd.index.build import DOCUMENTS_LABEL, Derive, DigestSpec, TableCache, TablePlan
from srvd.index.model import pacc_txt
from srvd.wire.discovery import TEMPLATE, TXT

OWNER = "_ua-auto-config"  # the zone's apex: the TXT is at _ua-auto-config.<domain>


def deriver(settings: HttpSettings | None) -> Derive | None:
    """The ``derive`` hook for a configuration's ``http:`` settings (None: PACC is off)."""
    if settings is None or not settings.pacc:
        return None
    # by the _tcp table's digest and the profile whose http.profiles entry applies
    made: dict[tuple[bytes, str | None], tuple[RRsetSpec, ...]] = {}

    def derive(
        cache: TableCache, plans: tuple[TablePlan, ...], profile: str | None
    ) -> tuple[RRsetSpec, ...]:
        for plan in plans:
            if plan.label != DOCUMENTS_LABEL:
                continue
            # the documents of a table are those of the first profile planned with it (as on
            # the HTTP side, srvd.server.web.Documents)
            owner = cache.profile_of.get(plan.digest, profile)
            known = made.get((plan.digest, owner))
            if known is None:
                chosen = settings.of(owner)
                known = made[(plan.digest, owner)] = _specs(cache, plan, chosen)
            return known
        return ()

    return derive


def _specs(cache: TableCache, plan: TablePlan, settings: HttpSettings) -> tuple[RRsetSpec, ...]:
    document = documents.pacc(table_facts(cache.table(plan)), settings)
    if document is None:
        return ()
    if TEMPLATE.encode() in document:
        return (DigestSpec(OWNER, TXT, skeleton=document),)
    return (RRsetSpec(OWNER, TXT, txt=(pacc_txt(document),)),)
