"""The discovery services srvd knows: their record types and the labels a client asks for.

Every layer may import this (it imports nothing of srvd): the configuration reads these keys,
the answer path counts queries by them, the metrics label them.
"""

SRV = 33
TXT = 16

SERVICE_KEYS = (
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "submission",
    "submissions",
    "caldav",
    "caldavs",
    "carddav",
    "carddavs",
    "jmap",
    "autodiscover",
)
TEMPLATE = "{domain}"  # in a target or a TXT text: the customer domain, filled in per zone
