"""portinspect test suite."""
