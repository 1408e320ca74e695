"""The tables (SQLAlchemy Core). Every change here needs a migration in migrations/versions."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from bot.store.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The organisation tree: school → college → class, plus departments. `id_path` is the chain of
# ids from the root ("/1/4/9/"), so "is X inside Y" is a prefix test, not a recursive query.
units = Table(
    "units",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", Integer, ForeignKey("units.id"), nullable=True),
    Column("name", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("id_path", String(512), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("parent_id", "name", name="uq_units_parent_name"),
)

people = Table(
    "people",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("telegram_id", BigInteger, nullable=False, unique=True),
    Column("username", String(64), nullable=True, index=True),
    Column("full_name", String(256), nullable=False),
    Column("language_code", String(16), nullable=True),
    Column("locale", String(8), nullable=True),
    # Set when the person opened a private chat with the bot: only then can it write to them.
    Column("started_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# A person may hold several roles, each scoped to a unit (and everything below it). Revoked
# roles stay as evidence of who could do what, and when.
roles = Table(
    "roles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("person_id", Integer, ForeignKey("people.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("unit_id", Integer, ForeignKey("units.id"), nullable=False),
    Column("granted_at", UTCDateTime, nullable=False),
    Column("granted_by", Integer, ForeignKey("people.id"), nullable=True),
    Column("invitation_id", Integer, ForeignKey("invitations.id"), nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoked_by", Integer, ForeignKey("people.id"), nullable=True),
    Index(
        "uq_roles_active",
        "person_id",
        "role",
        "unit_id",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

# Group chats the bot is in. `channel` + `address` name the chat for any messenger.
groups = Table(
    "groups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("address", String(64), nullable=False),
    Column("title", String(256), nullable=False),
    Column("purpose", String(16), nullable=True),
    Column("unit_id", Integer, ForeignKey("units.id"), nullable=True),
    Column("bound_by", Integer, ForeignKey("people.id"), nullable=True),
    Column("bound_at", UTCDateTime, nullable=True),
    Column("joined_at", UTCDateTime, nullable=False),
    Column("left_at", UTCDateTime, nullable=True),
    UniqueConstraint("channel", "address", name="uq_groups_channel_address"),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("unit_id", Integer, ForeignKey("units.id"), nullable=False),
    Column("max_uses", Integer, nullable=False),
    Column("uses", Integer, nullable=False, server_default="0"),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("created_by", Integer, ForeignKey("people.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoked_by", Integer, ForeignKey("people.id"), nullable=True),
)

# Append-only record of organisational changes (who bound a group, who revoked a role...).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor_id", Integer, ForeignKey("people.id"), nullable=True),
    Column("action", String(32), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
)

# Durable outgoing notifications: written in the same transaction as the change that causes
# them, delivered by bot.outbox.sender. `payload` is channel-neutral (text, buttons, photo path).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("address", String(64), nullable=False),
    Column("topic", String(48), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("message_ref", String(64), nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_outbox_pending", "status", "channel", "address", "id"),
)

# Reports filed by informants and staff; shown as R-0042 (the id), never by a raw database id.
reports = Table(
    "reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("reporter_id", Integer, ForeignKey("people.id"), nullable=False),
    Column("unit_id", Integer, ForeignKey("units.id"), nullable=False),
    Column("category", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("description", Text, nullable=False),
    Column("latitude", Float, nullable=True),
    Column("longitude", Float, nullable=True),
    Column("anonymous", Boolean, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("assignee_id", Integer, ForeignKey("people.id"), nullable=True),
    Column("duplicate_of", Integer, ForeignKey("reports.id"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("ack_deadline", UTCDateTime, nullable=False),
    Column("acknowledged_at", UTCDateTime, nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
    # When the next escalation is due while nobody has acknowledged (NULL once acknowledged).
    Column("escalate_at", UTCDateTime, nullable=True, index=True),
    Column("escalations", Integer, nullable=False, server_default="0"),
)

report_photos = Table(
    "report_photos",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("report_id", Integer, ForeignKey("reports.id"), nullable=False, index=True),
    Column("file_id", String(256), nullable=False),
    Column("file_unique_id", String(128), nullable=False),
    Column("size", Integer, nullable=True),
    # Under DATA_DIR, named by content hash; NULL when Telegram would not let us download it.
    Column("path", String(256), nullable=True),
    Column("note", String(256), nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
)

# Append-only history of a report: every step with who and when.
report_events = Table(
    "report_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("report_id", Integer, ForeignKey("reports.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor_id", Integer, ForeignKey("people.id"), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("detail", JSON, nullable=False),
)

# All-clear reports (零报告): an informant says "nothing to report" for their class, once per
# class and period. A report filed for the class within the period counts too, without a row here.
allclears = Table(
    "allclears",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("unit_id", Integer, ForeignKey("units.id"), nullable=False),
    # "weekly-2026-09-04": the period's kind and the local date it closes on.
    Column("period_key", String(32), nullable=False),
    Column("person_id", Integer, ForeignKey("people.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("unit_id", "period_key", name="uq_allclears_unit_period"),
)

# The all-clear cycle's steps, each at most once per period: the period was watched (the bot ran
# during it), the silent were reminded, the command groups got the summary. The unique key is
# what keeps a restart or a second timer from sending anything twice.
allclear_rounds = Table(
    "allclear_rounds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("period_key", String(32), nullable=False),
    Column("step", String(16), nullable=False),
    Column("opens_at", UTCDateTime, nullable=False),
    Column("closes_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime, nullable=False),
    Column("detail", JSON, nullable=False),
    UniqueConstraint("period_key", "step", name="uq_allclear_rounds_period_step"),
)

# Duty roster (值班表): each import is one batch, kept as evidence of who loaded which roster.
duty_imports = Table(
    "duty_imports",
    metadata,
    Column("id", Integer, primary_key=True),
    # NULL when imported from the command line, where there is no Telegram person.
    Column("imported_by", Integer, ForeignKey("people.id"), nullable=True),
    Column("source", String(16), nullable=False),
    Column("file_name", String(256), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("first_date", Date, nullable=False),
    Column("last_date", Date, nullable=False),
    Column("at", UTCDateTime, nullable=False),
)

# One person on one shift of one local date. A later import for the same date marks these rows
# replaced instead of deleting them, so a handover or reminder still points at what was planned.
duty_shifts = Table(
    "duty_shifts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("import_id", Integer, ForeignKey("duty_imports.id"), nullable=False),
    Column("date", Date, nullable=False, index=True),
    Column("shift", String(16), nullable=False),
    Column("role", String(16), nullable=False),
    Column("person_id", Integer, ForeignKey("people.id"), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("replaced_at", UTCDateTime, nullable=True),
    Index("ix_duty_shifts_window", "starts_at", "ends_at"),
)

# Handover notes (交班): written by someone on duty, read by the next shift.
handovers = Table(
    "handovers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("shift_id", Integer, ForeignKey("duty_shifts.id"), nullable=False),
    Column("person_id", Integer, ForeignKey("people.id"), nullable=False),
    Column("text", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False, index=True),
)

# Each shift start handled once: reminded ("sent") or, when the bot was down too long, "missed".
# The unique key is what keeps a restart from reminding twice or forgetting a start.
duty_reminders = Table(
    "duty_reminders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("date", Date, nullable=False),
    Column("shift", String(16), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("status", String(8), nullable=False),
    Column("done_at", UTCDateTime, nullable=False),
    Column("detail", JSON, nullable=False),
    UniqueConstraint("date", "shift", name="uq_duty_reminders_date_shift"),
)

# Patrol checkpoints (巡更点): a place with coordinates and an unguessable token printed as a QR
# code. Re-issuing the token makes every printed copy of the old code useless.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("unit_id", Integer, ForeignKey("units.id"), nullable=False),
    # NULL until an admin shares the place's location.
    Column("latitude", Float, nullable=True),
    Column("longitude", Float, nullable=True),
    Column("radius_m", Integer, nullable=False, server_default="50"),
    Column("token", String(48), nullable=False, unique=True),
    Column("active", Boolean, nullable=False, server_default=text("1")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Routes: a named list of checkpoints walked in a daily local time window, optionally repeated
# every N hours inside it (a night round 22:00–06:00 every 2 h is four windows a night).
patrol_routes = Table(
    "patrol_routes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("unit_id", Integer, ForeignKey("units.id"), nullable=False),
    Column("checkpoint_ids", JSON, nullable=False),
    Column("window_start", String(5), nullable=False),  # "22:00", local time
    Column("window_end", String(5), nullable=False),  # "06:00": before the start = next day
    Column("every_hours", Integer, nullable=True),
    Column("active", Boolean, nullable=False, server_default=text("1")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One walk of a route in one window. The unique key is what makes the closing summary go out
# exactly once, whatever restarts or second timers happen.
patrol_rounds = Table(
    "patrol_rounds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("route_id", Integer, ForeignKey("patrol_routes.id"), nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    Column("started_by", Integer, ForeignKey("people.id"), nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("summary_sent_at", UTCDateTime, nullable=True),
    UniqueConstraint("route_id", "window_start", name="uq_patrol_rounds_route_window"),
)

# Check-ins: the patrol record the law asks for. `sent_at` is Telegram's server time of the
# guard's message, `scanned_at` that of the QR scan (NULL when the location came unscanned).
checkins = Table(
    "checkins",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("checkpoint_id", Integer, ForeignKey("checkpoints.id"), nullable=True, index=True),
    Column("guard_id", Integer, ForeignKey("people.id"), nullable=False),
    Column("sent_at", UTCDateTime, nullable=False, index=True),
    Column("scanned_at", UTCDateTime, nullable=True),
    Column("latitude", Float, nullable=True),
    Column("longitude", Float, nullable=True),
    Column("distance_m", Float, nullable=True),
    Column("status", String(16), nullable=False),  # verified | far | no-location
    Column("reason", String(16), nullable=True),  # why it did not verify: declined, stale…
    Column("live", Boolean, nullable=False),
    Column("note", Text, nullable=True),
    Column("photo_path", String(256), nullable=True),
    Column("round_id", Integer, ForeignKey("patrol_rounds.id"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Hazards (隐患): the ledger the standards score. A hazard is registered, given a responsible
# unit and a deadline, fixed, and verified by someone other than the fixer. Shown as H-0107.
hazards = Table(
    "hazards",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("reporter_id", Integer, ForeignKey("people.id"), nullable=False),
    Column("unit_id", Integer, ForeignKey("units.id"), nullable=False),  # where it was found
    # NULL until someone says: a quick photo report leaves them to be completed with buttons.
    Column("category", String(16), nullable=True),
    Column("severity", String(16), nullable=True),
    Column("place", String(256), nullable=False, server_default=""),
    Column("latitude", Float, nullable=True),
    Column("longitude", Float, nullable=True),
    Column("checkpoint_id", Integer, ForeignKey("checkpoints.id"), nullable=True),
    Column("description", Text, nullable=False),
    Column("state", String(24), nullable=False, index=True),
    Column("responsible_unit_id", Integer, ForeignKey("units.id"), nullable=True),
    Column("deadline", UTCDateTime, nullable=True),
    Column("interim_measures", Text, nullable=True),
    # The inspection that found it (checklists); a plain id, linked by that capability.
    Column("inspection_id", Integer, nullable=True, index=True),
    # False while a hazard reported by an informant waits for an officer's confirmation.
    Column("confirmed", Boolean, nullable=False, server_default=text("1")),
    Column("fixed_by", Integer, ForeignKey("people.id"), nullable=True),  # the current fix
    Column("created_at", UTCDateTime, nullable=False),
    Column("assigned_at", UTCDateTime, nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
    # Next deadline reminder / overdue escalation due (NULL when none is planned).
    Column("remind_at", UTCDateTime, nullable=True, index=True),
    Column("escalate_at", UTCDateTime, nullable=True, index=True),
    Column("escalations", Integer, nullable=False, server_default="0"),
)
hazard_photos = Table(
    "hazard_photos",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("hazard_id", Integer, ForeignKey("hazards.id"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # before | after
    Column("file_id", String(256), nullable=False),
    Column("file_unique_id", String(128), nullable=False),
    Column("size", Integer, nullable=True),
    Column("path", String(256), nullable=True),  # under DATA_DIR, by content hash
    Column("note", String(256), nullable=True),
    Column("added_by", Integer, ForeignKey("people.id"), nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
)
hazard_events = Table(
    "hazard_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("hazard_id", Integer, ForeignKey("hazards.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor_id", Integer, ForeignKey("people.id"), nullable=True),
    Column("kind", String(24), nullable=False),
    Column("detail", JSON, nullable=False),
)

# Inspection checklists (检查表): a named list of items an inspector walks through. Importing a
# template again under the same name retires its items (retired_at) and adds the new ones, so an
# earlier inspection still points at the items it was asked.
checklist_templates = Table(
    "checklist_templates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("unit_id", Integer, ForeignKey("units.id"), nullable=False),
    Column("created_by", Integer, ForeignKey("people.id"), nullable=True),  # NULL: the CLI
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("1")),
)
checklist_items = Table(
    "checklist_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "template_id", Integer, ForeignKey("checklist_templates.id"), nullable=False, index=True
    ),
    Column("position", Integer, nullable=False),
    Column("text", String(200), nullable=False),
    Column("retired_at", UTCDateTime, nullable=True),
)
# One walk of a template: the record that the inspection happened (state done), with the items
# as they were when it started (item_ids, in order).
inspections = Table(
    "inspections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("template_id", Integer, ForeignKey("checklist_templates.id"), nullable=False),
    Column("inspector_id", Integer, ForeignKey("people.id"), nullable=False),
    Column("place", String(256), nullable=False, server_default=""),
    Column("item_ids", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # in_progress | done | abandoned
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True, index=True),
)
inspection_results = Table(
    "inspection_results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("inspection_id", Integer, ForeignKey("inspections.id"), nullable=False),
    Column("item_id", Integer, ForeignKey("checklist_items.id"), nullable=False),
    Column("result", String(16), nullable=False),  # pass | fail | not_applicable
    Column("note", Text, nullable=True),
    Column("photo_file_id", String(256), nullable=True),
    Column("photo_path", String(256), nullable=True),
    Column("hazard_id", Integer, ForeignKey("hazards.id"), nullable=True),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("inspection_id", "item_id", name="uq_inspection_results_inspection_id"),
)

# Reminder rules (提醒): what, when (``schedule`` JSON: kind once|daily|weekly|monthly|cron),
# lead times (seconds before each due time), to whom. Deleted rules stay (deleted_at) as the
# evidence their occurrences point at. ``planned_from``: nothing before it is due (creation,
# or the last resume).
reminder_rules = Table(
    "reminder_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("schedule", JSON, nullable=False),
    Column("leads", JSON, nullable=False),
    Column("target_purpose", String(16), nullable=True),
    Column("target_unit_id", Integer, ForeignKey("units.id"), nullable=False),
    Column("target_role", String(16), nullable=True),
    Column("ask_ack", Boolean, nullable=False),
    Column("follow_up_s", Integer, nullable=True),
    Column("paused", Boolean, nullable=False),
    Column("created_by", Integer, ForeignKey("people.id"), nullable=True),  # NULL: the CLI
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("planned_from", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),
    # Set: the rule runs only during a special period of this level or a higher one (1 is the
    # highest, 一级防控); NULL: always.
    Column("alert_level", Integer, nullable=True),
)
# Each occurrence (rule, due time, lead) handled once: sent or, noticed too late, missed. The
# unique key is what keeps a restart or a second timer from sending it twice.
reminder_occurrences = Table(
    "reminder_occurrences",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("rule_id", Integer, ForeignKey("reminder_rules.id"), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("lead_s", Integer, nullable=False),
    Column("state", String(8), nullable=False),  # sent | missed
    Column("done_at", UTCDateTime, nullable=False),
    Column("follow_up_at", UTCDateTime, nullable=True, index=True),
    Column("followed_up_at", UTCDateTime, nullable=True),
    Column("detail", JSON, nullable=False),  # the group and person ids it was sent to
    UniqueConstraint("rule_id", "due_at", "lead_s", name="uq_reminder_occurrences_key"),
)
# "收到": one per person per occurrence and chat; group_id is the chat it was pressed in (NULL:
# private, where the service checks for an earlier one: SQL counts NULLs as all different).
reminder_acks = Table(
    "reminder_acks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("occurrence_id", Integer, ForeignKey("reminder_occurrences.id"), nullable=False),
    Column("person_id", Integer, ForeignKey("people.id"), nullable=False),
    Column("group_id", Integer, ForeignKey("groups.id"), nullable=True),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("occurrence_id", "person_id", "group_id", name="uq_reminder_acks_person"),
)

# Drills, trainings, dispute-review meetings and publicity events (演练 / 培训 / 会议 / 宣传): one
# record type, since the assessment counts each of them. ``ref`` is "D-0001". The lead-time
# reminders are an ordinary one-off reminder rule (``reminder_rule_id``), so they are sent
# exactly once like any other.
activities = Table(
    "activities",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ref", String(16), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # drill | training | meeting | publicity
    Column("topic", String(16), nullable=False),  # fire | anti_terror | emergency | traffic | …
    Column("title", String(200), nullable=False),
    Column("place", String(256), nullable=False),
    Column("planned_at", UTCDateTime, nullable=False, index=True),
    Column("state", String(16), nullable=False),  # planned | done | cancelled
    Column("target_purpose", String(16), nullable=True),
    Column("target_unit_id", Integer, ForeignKey("units.id"), nullable=False),
    Column("reminder_rule_id", Integer, ForeignKey("reminder_rules.id"), nullable=True),
    Column("created_by", Integer, ForeignKey("people.id"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime, nullable=True, index=True),  # when it actually took place
    Column("done_by", Integer, ForeignKey("people.id"), nullable=True),
    Column("participants", Integer, nullable=True),
    Column("summary", Text, nullable=True),
)
activity_photos = Table(
    "activity_photos",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("activity_id", Integer, ForeignKey("activities.id"), nullable=False, index=True),
    Column("file_id", String(256), nullable=False),
    Column("path", String(256), nullable=True),
    Column("at", UTCDateTime, nullable=False),
)
# The history of an activity (planned, postponed, cancelled, done): who, when, what changed.
activity_events = Table(
    "activity_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("activity_id", Integer, ForeignKey("activities.id"), nullable=False, index=True),
    Column("actor_id", Integer, ForeignKey("people.id"), nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Column("action", String(16), nullable=False),
    Column("detail", JSON, nullable=False),
)

# Obligations of the compliance calendar (考评): what must be done how often, and which records
# count as evidence (``evidence`` JSON, e.g. {"type": "activity", "kind": "drill",
# "topics": ["anti_terror"]}). ``key`` makes loading a preset idempotent.
obligations = Table(
    "obligations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(64), nullable=False, unique=True),
    Column("name", String(64), nullable=False),
    Column("period", String(16), nullable=False),  # day | week | month | quarter | semester | …
    Column("required", Integer, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("preset", String(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Special periods (重点时段): a heightened alert level between two moments. ``ended_at`` is an
# early end declared by an admin; the announcements at start and end go out exactly once
# (``started_sent_at`` / ``ended_sent_at`` are the claims).
special_periods = Table(
    "special_periods",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("level", Integer, nullable=False),  # 1 = 一级 (highest), 2 = 二级
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("note", String(200), nullable=False),
    Column("created_by", Integer, ForeignKey("people.id"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("started_sent_at", UTCDateTime, nullable=True),
    Column("ended_sent_at", UTCDateTime, nullable=True),
)
