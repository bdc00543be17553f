"""
Helpers the tests import (plain functions and classes; fixtures stay in the ``conftest.py`` files).

Importable as ``tests.support`` both in the test process (pytest.ini puts the repository root on the path)
and in the devstack's LMS/CMS processes (``Devstack.env()`` does too), so :mod:`tests.support.scenarios`
holds the code the tests run inside the platform with ``Devstack.run_function``.
"""
