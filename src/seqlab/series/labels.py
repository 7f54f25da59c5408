"""Events and their labels: what `--event` says, turned into a 0/1 (or unknown) value per row.

    COLUMN:up=1%,down=0.5%,within=5   triple barrier: +1% is touched before -0.5%, within 5 steps
    COLUMN:up=2%,within=10            +2% is touched within 10 steps (no lower barrier)
    COLUMN:down=3%,within=10          -3% is touched within 10 steps (a fall is the event)
    COLUMN:above=30,within=5          the column reaches 30 or more within 5 steps (a level)
    COLUMN:below=10,within=5          the column reaches 10 or less within 5 steps
    COLUMN:label[,within=H]           the column holds the label itself, 0 or 1 (empty = unknown)

Barriers are relative to the column's value at the row; steps are the rows after it (t+1 .. t+within).
A touch is read on the bar's high (up, above) and low (down, below) when the column has them
(`SPX` or `SPX.close` with `SPX.high`, `SPX.low`), else on the column itself. A bar that touches both
barriers counts as down-first: its row is labelled 0 (the run says how many such rows there were).
The last `within` rows have no complete window and no label. `name=...` names the event in outputs.
A label column's `within` (default 1) is how far its label looks ahead: the rows it purges.
"""

import re
from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import SeqlabError
from ..options import pattern
from .table import Table, fmt, preview

KEYS = ("up", "down", "within", "above", "below", "name")
EXAMPLE = 'e.g. --event "SPX:up=1%,down=0.5%,within=5" or --event "SIGNAL:label"'


@dataclass
class Event:
    name: str  # how outputs call it (the spec as given, unless name= says otherwise)
    column: str  # the channel the event is read on (resolved: SPX -> SPX.close when only that exists)
    kind: str  # "barrier" (up/down), "level" (above/below) or "label"
    within: int = 1  # steps ahead the label looks: the horizon purged before every test block
    up: float = 0.0  # fractions: 0.01 = 1%
    down: float = 0.0
    above: float | None = None
    below: float | None = None
    high: str = ""  # the columns touches are read on ("" = the column itself)
    low: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def percent(text: str, key: str, spec: str) -> float:
    if not text.endswith("%"):
        raise SeqlabError(f"event {spec!r}: {key}={text} needs a percent sign ({key}={text}%); {EXAMPLE}")
    try:
        value = float(text[:-1]) / 100
    except ValueError:
        raise SeqlabError(f"event {spec!r}: cannot read {key}={text} as a percentage; {EXAMPLE}") from None
    if not 0 < value < (1 if key == "down" else 100):
        raise SeqlabError(f"event {spec!r}: {key} must be a positive percentage{' below 100%' * (key == 'down')}, "
                          f"got {text}")
    return value


def parse_event(spec: str, names: list[str] | None) -> Event:
    """The event `spec` says; `names` None checks its form alone (the command line, before the table is read)."""
    column, sep, rest = spec.rpartition(":")
    if not sep or not column:
        raise SeqlabError(f"cannot read event {spec!r}: expected COLUMN:up=U%,down=D%,within=H; {EXAMPLE}")
    column = column.strip() if names is None else resolve_column(column.strip(), names, spec)
    items = [p.strip() for p in rest.split(",") if p.strip()]
    fields = {}
    for item in items:
        key, eq, value = item.partition("=")
        if item == "label":
            fields["label"] = ""
        elif not eq or key not in KEYS:
            raise SeqlabError(f"event {spec!r}: unknown part {item!r}; parts are label, {', '.join(KEYS)}; {EXAMPLE}")
        else:
            fields[key] = value.strip()
    name = fields.pop("name", "") or spec
    within = 1
    if "within" in fields:
        text = fields.pop("within")
        if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
            raise SeqlabError(f"event {spec!r}: within must be a whole number of steps >= 1, got {text!r}")
        within = int(text)
    elif "label" not in fields:
        raise SeqlabError(f"event {spec!r} needs within=H (how many steps ahead it looks); {EXAMPLE}")
    high, low = touch_columns(column, names or [])
    if "label" in fields:
        if set(fields) != {"label"}:
            raise SeqlabError(f"event {spec!r}: a label column takes only within= and name=, not "
                              f"{', '.join(sorted(set(fields) - {'label'}))}")
        return Event(name, column, "label", within)
    if {"up", "down"} & set(fields) and {"above", "below"} & set(fields):
        raise SeqlabError(f"event {spec!r}: give up=/down= (percent moves) or above=/below= (levels), not both")
    if "up" in fields or "down" in fields:
        up = percent(fields["up"], "up", spec) if "up" in fields else 0.0
        down = percent(fields["down"], "down", spec) if "down" in fields else 0.0
        return Event(name, column, "barrier", within, up=up, down=down, high=high, low=low)
    if "above" in fields or "below" in fields:
        if len(fields) > 1:
            raise SeqlabError(f"event {spec!r}: give one of above= or below=")
        key, text = next(iter(fields.items()))
        try:
            level = float(text)
        except ValueError:
            raise SeqlabError(f"event {spec!r}: cannot read {key}={text} as a number") from None
        return Event(name, column, "level", within, **{key: level}, high=high, low=low)
    raise SeqlabError(f"event {spec!r} says what to wait for: up=, down=, above=, below= or label; {EXAMPLE}")


def resolve_column(column: str, names: list[str], spec: str) -> str:
    for candidate in (column, f"{column}.close", f"{column}.adj_close"):
        if candidate in names:
            return candidate
    raise SeqlabError(f"event {spec!r} is on column {column!r}, which the table does not have; its columns: "
                      f"{preview(names)}")


def touch_columns(column: str, names: list[str]) -> tuple[str, str]:
    base = re.sub(r"[._](adj_close|close)$", "", column)
    found = lambda part: next((c for c in (f"{base}.{part}", f"{base}_{part}") if c in names and c != column), "")
    high, low = found("high"), found("low")
    return (high, low) if high and low else ("", "")


def parse_events(specs: list[str], names: list[str]) -> list[Event]:
    if not specs:
        raise SeqlabError(f"--series needs an event to predict: {EXAMPLE}")
    events = [parse_event(s, names) for s in specs]
    seen = set()
    for e in events:
        if e.name in seen:
            raise SeqlabError(f"event {e.name!r} is given twice; name one differently with name=...")
        seen.add(e.name)
    return events


def label_columns(events: list[Event]) -> list[str]:
    return [e.column for e in events if e.kind == "label"]


def labels(event: Event, table: Table) -> tuple[np.ndarray, int]:
    """(labels (T,) float: 1, 0 or NaN = unknown, rows where one bar touched both barriers)."""
    x = table.column(event.column)
    if event.kind == "label":
        bad = np.flatnonzero(~np.isnan(x) & (x != 0) & (x != 1))
        if len(bad):
            i = int(bad[0])
            raise SeqlabError(f"label column {event.column!r} holds {x[i]:g} at {fmt(table.time[i])}; a label "
                              f"column holds 0 or 1 (empty = unknown)")
        return x.astype(np.float64), 0
    high = table.column(event.high) if event.high else x
    low = table.column(event.low) if event.low else x
    H, T = event.within, len(x)
    out = np.full(T, np.nan)
    if T <= H:
        return out, 0
    ahead_high = sliding_window_view(high[1:], H)[: T - H]  # (T-H, H): the bars t+1 .. t+H of row t
    ahead_low = sliding_window_view(low[1:], H)[: T - H]
    ref = x[: T - H, None]
    if event.kind == "level":
        hit = ahead_high >= event.above if event.above is not None else ahead_low <= event.below
        out[: T - H] = hit.any(axis=1)
        return out, 0
    up_hit = ahead_high >= ref * (1 + event.up) if event.up else np.zeros_like(ahead_high, bool)
    down_hit = ahead_low <= ref * (1 - event.down) if event.down else np.zeros_like(ahead_low, bool)
    if not event.down:  # a rise is the event
        out[: T - H] = up_hit.any(axis=1)
        return out, 0
    if not event.up:  # a fall is the event
        out[: T - H] = down_hit.any(axis=1)
        return out, 0
    first_up = np.where(up_hit.any(axis=1), up_hit.argmax(axis=1), H)
    first_down = np.where(down_hit.any(axis=1), down_hit.argmax(axis=1), H)
    out[: T - H] = first_up < first_down  # strictly earlier: a bar touching both is down-first
    return out, int(((first_up == first_down) & (first_up < H)).sum())


def label_matrix(events: list[Event], table: Table) -> tuple[np.ndarray, list[str]]:
    """(labels (T, K), notes for the output)."""
    columns, notes = [], []
    for e in events:
        y, both = labels(e, table)
        columns.append(y)
        if e.kind == "barrier" and e.up and e.down:
            touch = f"on {e.high}/{e.low}" if e.high else f"on {e.column} alone (no high/low columns)"
            notes.append(f"{e.name}: touches read {touch}; {both:,} rows had a bar touching both barriers, "
                         f"counted as down-first (0)")
    return np.column_stack(columns), notes


def _spec_problem(spec: str) -> str | None:
    try:
        parse_event(spec, None)
    except SeqlabError as e:
        return str(e)
    return None


EVENT = pattern("event", _spec_problem, "COLUMN:up=U%,down=D%,within=H, COLUMN:above=X,within=H or COLUMN:label")
