"""Collectors: every source speaks to the rest only through collectors.base.

The list of collectors is explicit (collectors.build), never a registry filled by imports.
"""
