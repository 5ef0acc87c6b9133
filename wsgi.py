"""The WSGI entry point for gunicorn: `gunicorn wsgi:app`."""

from clinic_bot import create_app

app = create_app()
