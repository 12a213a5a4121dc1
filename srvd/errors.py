"""The root of srvd's own exceptions."""


class SrvdError(Exception):
    """An srvd error."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args or (self.__doc__,))
