"""The closed set of roles and the one table of which role may change what. Pure: imported by
the control room (dashboards.auth), by collect when it authorizes a command from another
process (gwanje.bus), and by docs/tests. Nothing else decides.

Roles are ordered, lowest first: each may do everything the roles before it may."""
from __future__ import annotations

ROLES = ("viewer", "operator", "supervisor", "engineer", "admin")

# The minimum role of every state-changing action. A callback or command handler that writes
# names its action here and checks it with role_allows() (the UI through dashboards.auth.authorize).
ACTIONS: dict[str, str] = {
    "alarm.acknowledge": "operator",      # one alarm or a whole line
    "alarm.comment": "operator",
    "alarm.shelve": "supervisor",         # and unshelve: hiding an annunciated alarm is a supervisor's call
    "alarm.out_of_service": "supervisor", # and back in service
    "shift.downtime_reason": "operator",
    # rewrites the stored OEE records of a closed shift, which reports and the Pareto read:
    # the supervisor who signs the shift off (engineers and admins rank above)
    "shift.recompute": "supervisor",
    # release a LOT held for review (a reject spike, an alarm): the supervisor's call
    "lot.release": "supervisor",
    # the audit log page and its export
    "audit.view": "admin",
}


def role_allows(role: object, action: str) -> bool:
    """True when `role` is one of ROLES at or above the minimum of `action` (KeyError for an
    action not in ACTIONS: a bug in the caller)."""
    need = ACTIONS[action]
    return role in ROLES and ROLES.index(role) >= ROLES.index(need)  # type: ignore[arg-type]
