#!/usr/bin/env python
"""django-oauth-toolkit as a second, independent authorization server for the interop tests."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dot_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
