"""What a client sends: its e-mail address, in a query or in Outlook's POX request.

The POX body is parsed by the standard library's expat with every DTD refused: a document
type declaration, an entity declaration or an external entity reference ends the parse with
an error before anything is expanded or read, so a billion-laughs body costs nothing and no
file or URL is ever opened (the protection defusedxml gives, without a dependency: srvd needs
only this one element of one small document).
"""

from __future__ import annotations

from xml.parsers import expat

from srvd.errors import SrvdError
from srvd.wire.names import InvalidName, host_name

MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3 (a path of 256 octets, brackets included)


class BadRequest(SrvdError):
    """The client sent something srvd cannot use: answered 400 with this message."""


def address_of(value: str) -> str:
    """An e-mail address as a client gave it, checked leniently: ``local@domain`` with a
    non-empty local part and a valid domain; the domain is returned lower-cased in IDNA."""
    value = value.strip()
    if not value or len(value) > MAX_ADDRESS or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadRequest("expected an e-mail address")
    local, at, domain = value.rpartition("@")
    if not at or not local:
        raise BadRequest("expected an e-mail address")
    try:
        return f"{local}@{host_name(domain)}"
    except InvalidName:
        raise BadRequest("the e-mail address has no valid domain") from None


def domain_of_address(address: str) -> str:
    return address.rpartition("@")[2]


class _Refuse(Exception):
    pass


def pox_address(body: bytes) -> str | None:
    """The ``EMailAddress`` of an Autodiscover POX request (any namespace), or None when the
    request has none. Raises BadRequest for anything that is not well-formed XML without a DTD."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse(*_args: object) -> None:
        raise _Refuse

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    found: list[str] = []
    inside = [False]
    text: list[str] = []

    def start(name: str, _attributes: dict[str, str]) -> None:
        if name.rpartition(" ")[2] == "EMailAddress" and not found:
            inside[0] = True

    def end(name: str) -> None:
        if inside[0] and name.rpartition(" ")[2] == "EMailAddress":
            inside[0] = False
            found.append("".join(text))

    def data(chunk: str) -> None:
        if inside[0]:
            text.append(chunk)
            if sum(map(len, text)) > MAX_ADDRESS:
                raise _Refuse

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    try:
        parser.Parse(body, True)
    except _Refuse:
        raise BadRequest("refused: a DTD, an entity, or an oversized address") from None
    except expat.ExpatError:
        raise BadRequest("the request body is not well-formed XML") from None
    if not found:
        return None
    return address_of(found[0])
