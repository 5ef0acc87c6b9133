"""A trivial WSGI app: the load generator's ceiling is measured against it under gunicorn."""


def app(environ, start_response):
    """Read the body and answer 200 with two bytes."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
