"""Workflows: several pipeline commands chained into one run (``chunkseg demo``).

The one layer that may import more than one command module; commands themselves
share code only through private helper modules or the layers below.
"""
