"""A DynamoDB-compatible server for the tests: moto's, on a free loopback port.

DynamoDB applies each write to an item atomically, conditions included. moto
checks a condition and then writes, without a lock, on as many threads as it
has connections; so requests are applied here one at a time, while
connections are still served concurrently.

Prints the port once it accepts connections, then serves until its standard
input closes (the test that started it ended, however it ended).
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

moto = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()


def app(environ, start_response):
    with one_at_a_time:
        return list(moto(environ, start_response))


server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
print(server.server_port, flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
