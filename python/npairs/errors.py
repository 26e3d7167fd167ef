"""Exceptions of the npairs package.

Every error is an :class:`NpairsError` carrying ``.status`` (the library's
``npairs_status`` value, or ``None`` when the library could not be loaded) and
``.message``. Each status has its own subclass, which is also the matching
built-in exception, so ``except ValueError`` keeps working:

====================================  ===========================  ==================
status                                class                        also a
====================================  ===========================  ==================
NPAIRS_ERROR_INVALID_ARGUMENT (1)     InvalidArgumentError         ValueError
  (dtype problems)                    InvalidDTypeError            ValueError, TypeError
NPAIRS_ERROR_INVALID_VALUE (2)        InvalidValueError            ValueError
NPAIRS_ERROR_UNSUPPORTED (3)          UnsupportedError             NotImplementedError
NPAIRS_ERROR_OUT_OF_MEMORY (4)        OutOfMemoryError             MemoryError
NPAIRS_ERROR_BACKEND_UNAVAILABLE (5)  BackendUnavailableError      RuntimeError
NPAIRS_ERROR_DEVICE (6)               DeviceError                  RuntimeError
NPAIRS_ERROR_INTERNAL (7)             InternalError                RuntimeError
(library not found)                   LibraryNotFoundError         OSError
====================================  ===========================  ==================
"""

from __future__ import annotations


class NpairsError(Exception):
    """Base class of every error raised by npairs."""

    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self):
        return self.message

    def __reduce__(self):
        return (type(self), (self.message, self.status))


class InvalidArgumentError(NpairsError, ValueError):
    status = 1


class InvalidDTypeError(InvalidArgumentError, TypeError):
    status = 1


class InvalidValueError(NpairsError, ValueError):
    status = 2


class UnsupportedError(NpairsError, NotImplementedError):
    status = 3


class OutOfMemoryError(NpairsError, MemoryError):
    status = 4


class BackendUnavailableError(NpairsError, RuntimeError):
    status = 5


class DeviceError(NpairsError, RuntimeError):
    status = 6


class InternalError(NpairsError, RuntimeError):
    status = 7


class LibraryNotFoundError(NpairsError, OSError):
    """libnpairs could not be loaded (status is None)."""

    status = None


_BY_STATUS = {
    1: InvalidArgumentError,
    2: InvalidValueError,
    3: UnsupportedError,
    4: OutOfMemoryError,
    5: BackendUnavailableError,
    6: DeviceError,
    7: InternalError,
}


def error_for_status(status, message):
    """The exception for a non-zero library status (not raised)."""
    cls = _BY_STATUS.get(int(status), NpairsError)
    return cls(message, int(status))
