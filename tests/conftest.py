pytest_plugins = ["cbv.testing.pytest_plugin", "tests.world"]
