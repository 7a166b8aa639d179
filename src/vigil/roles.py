"""What each kind of staff account may do: in the review app, with evidence, from the CLI."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    VIEW = "view"  # the queue's metadata, the status page, the audit log
    REVIEW = "review"  # claim, reveal and decide ordinary held images; clean up an uploader
    CHILD_SAFETY = "child_safety"  # items that may show a child; illegal images; evidence
    LOCKDOWN = "lockdown"  # set and clear a site's lockdown level by hand
    ADMIN = "admin"  # reserved for managing the app itself


class UserRole(StrEnum):
    VIEWER = "viewer"
    MODERATOR = "moderator"
    CHILD_SAFETY = "child_safety"
    ADMIN = "admin"

    @property
    def permissions(self) -> frozenset[Permission]:
        return _PERMISSIONS[self]

    def may(self, permission: Permission) -> bool:
        return permission in _PERMISSIONS[self]


_PERMISSIONS = {
    UserRole.VIEWER: frozenset({Permission.VIEW}),
    UserRole.MODERATOR: frozenset({Permission.VIEW, Permission.REVIEW}),
    UserRole.CHILD_SAFETY: frozenset({Permission.VIEW, Permission.REVIEW, Permission.CHILD_SAFETY}),
    UserRole.ADMIN: frozenset(Permission),
}
