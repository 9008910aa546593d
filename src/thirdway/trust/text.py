"""Human-readable renderings of times, durations and the restoration path."""

from __future__ import annotations

from datetime import UTC, datetime

from thirdway.trust.model import RestorationPath, TiersConfig


def iso(timestamp: int) -> str:
    """Unix seconds as an ISO 8601 UTC time, e.g. ``2024-05-01T12:00:00Z`` (``@<seconds>`` past
    the year 9999, which a hostile event may claim)."""
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"@{timestamp}"


def duration(seconds: int) -> str:
    """``259200`` → ``3 days``; ``5400`` → ``1 h 30 min``."""
    if seconds == 0:
        return "no minimum time"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} day" + ("s" if days != 1 else ""))
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs:
        parts.append(f"{secs} s")
    return " ".join(parts)


def tier_label(tier: int, tiers: TiersConfig) -> str:
    return f"tier {tier} ({tiers.name(tier)})"


def describe_path(path: RestorationPath, tiers: TiersConfig) -> str:
    """The way back up in one sentence, with the concrete numbers and times."""
    if path.next_tier is None:
        return (
            f"no tier to restore: the agent holds {tier_label(path.cap, tiers)}, the tier held "
            "before the offence; higher tiers only by an auditor's promotion"
        )
    remaining = path.clean_actions - path.done
    done = f" ({path.done} done, {remaining} to go)" if path.done else ""
    ceiling = (
        f"; then one tier at a time the same way, up to {tier_label(path.cap, tiers)} (the tier "
        "held before the offence)"
        if path.cap > path.next_tier
        else " (the tier held before the offence)"
    )
    return (
        f"{path.clean_actions} clean verified actions{done} over at least "
        f"{duration(path.min_seconds)} from {iso(path.start)} (not before "
        f"{iso(path.not_before)}) restore {tier_label(path.next_tier, tiers)}{ceiling}; higher "
        "only by an auditor's promotion"
    )
