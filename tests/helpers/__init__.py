"""What several test files share. Test modules import from here (and from tests/standins/), never
from each other.

- ``api``: calls to the in-process API (``post``, ``SEED``, waiting for a delivery's status)
- ``push``: the device registry and PUSH submissions, and the devices' states
- ``inbox``: the in-app channel as a browser sees it (HTTP calls to a running API, sockets)
- ``factories``: rows written straight into the database
- ``db``: what tests read back from the database
- ``processes``: the relay, workers, API and console script as real processes
- ``contract``: the provider contract runner (tests/test_provider_contract.py holds the tables)
- ``net``: free ports
"""
