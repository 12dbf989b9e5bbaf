"""The ``trigger-sanity`` command line: thin adapters that parse arguments, call a
service function and print. Nothing imports this package."""
