"""The WSGI entry point for gunicorn: `gunicorn wsgi:app`."""

from clinic_bot.app import create_app

app = create_app()
