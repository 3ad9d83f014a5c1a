import pytest

# The helpers' asserts explain a failure as a test module's do: pytest rewrites the asserts of
# test modules and conftest.py only, unless told before the module is imported.
pytest.register_assert_rewrite("tests.helpers")
