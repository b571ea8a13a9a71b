"""The HTTP surface: FastAPI routes and the one error handler."""
