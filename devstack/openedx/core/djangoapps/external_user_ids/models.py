"""
Anonymous external ids of users, per purpose (xAPI, Caliper, LTI).

event-routing-backends takes the xAPI actor from here, creating the id on first use with
:meth:`ExternalId.add_new_user_id`; bulk paths use :meth:`ExternalId.batch_get_or_create_user_ids`, which
fires no ``post_save``, as upstream.
"""

import logging
from collections.abc import Iterable
from uuid import uuid4

from django.contrib.auth.models import User
from django.db import models
from model_utils.models import TimeStampedModel

log = logging.getLogger(__name__)


class ExternalIdType(TimeStampedModel):
    """A purpose for external ids; the rows for the names below are created by a migration."""

    MICROBACHELORS_COACHING = "mb_coaching"
    LTI = "lti"
    XAPI = "xapi"
    CALIPER = "caliper"

    name = models.CharField(max_length=32, unique=True, db_index=True)
    description = models.TextField()

    class Meta:
        app_label = "external_user_ids"

    def __str__(self):
        return self.name


class ExternalId(TimeStampedModel):
    external_user_id = models.UUIDField(default=uuid4, unique=True, editable=False)
    external_id_type = models.ForeignKey(ExternalIdType, db_index=True, on_delete=models.CASCADE)
    user = models.ForeignKey(User, on_delete=models.CASCADE)

    class Meta:
        app_label = "external_user_ids"
        unique_together = (("user", "external_id_type"),)

    def __str__(self):
        return f"{self.external_id_type}:{self.external_user_id}"

    @classmethod
    def add_new_user_id(cls, user: User, type_name: str) -> tuple["ExternalId | None", bool]:
        """The user's id of that type, created if needed: ``(external_id, created)``; ``(None, False)`` if no type."""
        try:
            id_type = ExternalIdType.objects.get(name=type_name)
        except ExternalIdType.DoesNotExist:
            log.info("External id type %s does not exist; no id created for user %s", type_name, user.id)
            return None, False
        return cls.objects.get_or_create(user=user, external_id_type=id_type)

    @classmethod
    def batch_get_or_create_user_ids(cls, users: Iterable[User], type_name: str) -> dict[int, "ExternalId"]:
        """The ids of that type for many users, creating the missing ones with one ``bulk_create``; by user id."""
        id_type = ExternalIdType.objects.get(name=type_name)
        user_ids = [user.id for user in users]
        existing = {ext.user_id: ext for ext in cls.objects.filter(external_id_type=id_type, user_id__in=user_ids)}
        missing = [cls(user_id=user_id, external_id_type=id_type) for user_id in user_ids if user_id not in existing]
        cls.objects.bulk_create(missing)
        return {**existing, **{ext.user_id: ext for ext in missing}}
