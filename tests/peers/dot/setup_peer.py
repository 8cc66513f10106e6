"""Migrate the peer's fresh database and create the user and the applications the tests use."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dot_project.settings")
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402

call_command("migrate", verbosity=0)
user, _ = User.objects.get_or_create(username="alice")
user.set_password("alice-password")
user.save()
for client_id, grant, client_type in [
    ("cc-app", Application.GRANT_CLIENT_CREDENTIALS, Application.CLIENT_CONFIDENTIAL),
    ("pw-app", Application.GRANT_PASSWORD, Application.CLIENT_CONFIDENTIAL),
    ("code-app", Application.GRANT_AUTHORIZATION_CODE, Application.CLIENT_PUBLIC),
]:
    Application.objects.update_or_create(
        client_id=client_id,
        defaults={
            "user": user,
            "name": client_id,
            "client_type": client_type,
            "authorization_grant_type": grant,
            "client_secret": "dot-secret-canary-3e9a",
            "hash_client_secret": False,
            "redirect_uris": "http://127.0.0.1/callback",
            "skip_authorization": True,
            "algorithm": "",
        },
    )
