"""The sandbox gateway in a process of its own: `python -m tests.reliability.gateway_server PORT`.

The app in sandbox mode (no WHAPI_TOKEN) on 127.0.0.1:PORT; only its /sandbox routes are used.
PUBLIC_URL names the web process, where it posts echoes and statuses as Whapi would.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from werkzeug.serving import make_server

from clinic_bot.app import create_app
from clinic_bot.bootstrap import build_runtime
from clinic_bot.settings import Settings


def main() -> None:
    """Serve the sandbox gateway until SIGTERM."""
    port = int(sys.argv[1])
    app = create_app(build_runtime(Settings.from_env()))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", port, app, threaded=True)

    def _stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
