"""The one exception the course raises for mistakes a student can fix."""


class CourseError(ValueError):
    """An error meant for a student: its message says what went wrong and what to do.

    It is a ``ValueError``, so ``except ValueError`` catches it too.
    """
