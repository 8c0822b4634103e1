"""Mails kept on a ticket without acting on them: held replies, refused commands, bounces.

A stranger's reply, or an agent's that does not prove it is the team's, is held for
the team to decide; an agent's mail with a bad command stays as a note and the agent
is told why; a bounce of one of our mails is recorded, its address suppressed when
the failure is permanent, and the team told. Blocking, inside the mail's savepoint.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import structlog

from mailgate.core.bounces import DeliveryReport
from mailgate.core.desk import Refusal
from mailgate.core.model import Action, BounceOfOurs, MessageKind
from mailgate.core.notify import Kind
from mailgate.core.participants import sender
from mailgate.core.senders import SenderVerdict
from mailgate.core.text import visible_reply
from mailgate.core.workflow import Workflow
from mailgate.outbound.notifier import Change, Notifier
from mailgate.store.repos import Tx
from mailgate.store.repos.history import Event
from mailgate.tickets.arrival import Arrival, Outcome, add_message

log = structlog.get_logger("mailgate.tickets")


def hold(
    tx: Tx, notifier: Notifier, arrival: Arrival, ticket: int, reason: str, *, quote: bool = True
) -> Outcome:
    """A stranger's reply: kept on the ticket, relayed to nobody; the team decides, its
    notice quoting the text (``quote``: not for a mail that may be a forgery of ours)."""
    row = add_message(tx, ticket, replace(arrival, kind=MessageKind.HELD))
    tx.history.add_events(
        [
            Event(
                ticket,
                "message_held",
                arrival.author,
                arrival.now,
                message_row=row,
                detail=reason,
            )
        ]
    )
    text = arrival.text if quote else ""
    notifier.team_notice(tx, ticket, Kind.TEAM_HELD, reason, arrival.now, text)
    return Outcome(arrival.spool_id, Action.HELD, ticket, reason)


def hold_unproven(
    tx: Tx, notifier: Notifier, arrival: Arrival, ticket: int, reason: str, verdict: SenderVerdict
) -> Outcome:
    """A mail from an agent's address that does not prove it is the team's: held like a
    stranger's reply (nothing carried out, nothing relayed, nobody added), the team told
    why, and the agent told once per ticket how to act, in case it was really them."""
    reason = f"{reason}; {verdict.reason}; held: not proven to be the team's"
    # A forgery of the team's address is not quoted back to the team: its links and its
    # words would arrive in the agents' mailboxes under mailgate's own name.
    outcome = hold(tx, notifier, arrival, ticket, reason, quote=False)
    agent = sender(arrival.mail)
    if agent is None or arrival.mail.from_count != 1:
        return outcome
    told = f"#{ticket} {agent.lower()}"
    if tx.history.event_exists("agent_told", new=told):
        return outcome
    now = arrival.now
    change = Change.system(ticket, reason=verdict.reason)
    notifier.agent_notice(tx, ticket, Kind.AGENT_UNPROVEN, change, agent.lower(), now)
    tx.history.add_events([Event(ticket, "agent_told", "mailgate", now, new=told)])
    return outcome


def refuse(
    tx: Tx,
    notifier: Notifier,
    workflow: Workflow,
    arrival: Arrival,
    ticket: int,
    refusal: Refusal,
    reason: str,
) -> Outcome:
    """An agent's message with a bad command: kept as a note, nothing changed or relayed;
    the agent is told what was wrong and what is allowed."""
    errors = refusal.text("en", workflow)  # the ticket's log and the worker's outcome
    arrival = replace(arrival, kind=MessageKind.NOTE)
    row = add_message(tx, ticket, arrival)
    tx.history.add_events(
        [
            Event(
                ticket,
                "command_failed",
                arrival.author,
                arrival.now,
                message_row=row,
                detail=errors[:1000],
            )
        ]
    )
    told = Change.system(ticket, faults=refusal.faults)  # told in the team's language
    notifier.agent_notice(tx, ticket, Kind.COMMAND_FAILED, told, arrival.author, arrival.now)
    log.warning("command.refused", ticket=f"#{ticket}", errors=len(refusal.faults))
    return Outcome(
        arrival.spool_id, Action.APPENDED, ticket, f"{reason}; commands refused: {errors}"
    )


def bounce(
    tx: Tx,
    notifier: Notifier,
    arrival: Arrival,
    decision: BounceOfOurs,
    report: DeliveryReport,
    suppression_days: float,
) -> Outcome:
    """A bounce of one of our mails, or a complaint about one: kept on its ticket as system
    mail, with an event; a permanent failure or a complaint suppresses the address; the
    team is told once."""
    now = arrival.now
    item = tx.outbox.get(decision.outbox)
    failed = ", ".join(report.recipients) or (", ".join(item.recipients) if item else "?")
    reason = _bounce_reason(decision.outbox, failed, report)
    log.warning(
        "mail.bounce",
        outbox_id=decision.outbox,
        matched_by=decision.matched_by,
        status=report.status,
        permanent=report.permanent,
    )
    if item is None or item.ticket is None:
        return Outcome(arrival.spool_id, Action.BOUNCE, None, reason)
    system = replace(arrival, kind=MessageKind.SYSTEM, text=visible_reply(arrival.mail))
    row = add_message(tx, item.ticket, system)
    event = "complaint_received" if report.feedback else "delivery_failed"
    tx.history.add_events(
        [Event(item.ticket, event, "mailgate", now, message_row=row, detail=reason)]
    )
    days = suppression_days
    if report.permanent and days > 0:
        for address in failed_recipients(report, item.recipients):
            tx.outbox.suppress(address, until=now + timedelta(days=days), reason=reason, now=now)
    kind = Kind.TEAM_COMPLAINT if report.feedback else Kind.TEAM_DELIVERY_FAILED
    notifier.team_notice(tx, item.ticket, kind, reason, now)
    return Outcome(arrival.spool_id, Action.BOUNCE, item.ticket, reason)


def _bounce_reason(outbox_id: int, failed: str, report: DeliveryReport) -> str:
    """What the ticket and the team are told of a bounce or a complaint."""
    if report.feedback:
        return f"{failed} complained of notification {outbox_id} ({report.feedback})"[:1000]
    what = f"{report.status or 'no status'}" + (
        f" {report.diagnostic}" if report.diagnostic else ""
    )
    return (
        f"notification {outbox_id} to {failed} failed "
        f"({'permanently' if report.permanent else 'for now'}): {what}"
    )[:1000]


def failed_recipients(report: DeliveryReport, sent_to: tuple[str, ...]) -> tuple[str, ...]:
    """The addresses of our mail that the report says failed; a report that names none of
    them concerns the only recipient, if the mail had one."""
    ours = {a.lower() for a in sent_to}
    named = tuple(a for a in report.recipients if a in ours)
    if named:
        return named
    return tuple(ours) if len(ours) == 1 else ()
