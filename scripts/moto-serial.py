"""moto's server, answering one request at a time.

moto's DynamoDB TransactWriteItems checks and applies item by item and rolls back by restoring
a snapshot of the table, so two transactions served at once on its threads can interleave,
see each other's uncommitted writes and undo each other. DynamoDB's transactions are atomic
and isolated; serving requests one at a time gives the tests that behaviour.
Usage: moto-serial.py -H HOST -p PORT (the arguments of moto_server).
"""

import threading

from moto import server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_lock = threading.Lock()
_call = DomainDispatcherApplication.__call__


def _serial(self, environ, start_response):
    with _lock:
        # Produce the whole response inside the lock.
        return list(_call(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serial

if __name__ == "__main__":
    server.main()
