"""The MONAI Label server fixtures live in tests/monailabel_server.py (the docks' tests start the same servers)."""

from tests.monailabel_server import free_port  # noqa: F401 - the tests here import it from .conftest
