"""The OAuth endpoints under /o/, a login page, and one protected API view."""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from oauth2_provider.views.generic import ProtectedResourceView


class Me(ProtectedResourceView):
    def get(self, request: HttpRequest) -> JsonResponse:
        user = request.resource_owner  # type: ignore[attr-defined]
        return JsonResponse({"user": user.username if user is not None else None})


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view()),
    path("api/me", Me.as_view()),
]
