"""The few errors a user can cause, each carrying a one-line message with the fix.

The CLI prints ``error: <message>`` and exits with code 2 for any ``UserError``;
everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; ``str(error)`` says what and how."""


class SourceError(UserError):
    """The screen, video, image or webcam cannot be read."""


class SinkError(UserError):
    """An output (virtual camera, file, port) cannot be opened."""


class ModelError(UserError):
    """A model file is missing or unreadable."""
