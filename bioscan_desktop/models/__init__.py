"""Qt item models over the project's read API."""
