"""pytest plugin (entry point ``posfault``): fixtures and strategies for QA suites.

Fixtures are added by the simulation issue; this module must stay importable on its own because
pytest loads it for every suite in an environment where posfault is installed.
"""
