"""Sample web services shipped with the app, so jobs run with no outside files or models."""
