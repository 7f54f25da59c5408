"""Reading a numeric table: CSV (also .gz), Parquet, or a directory of files aligned on time.

    table = read_table(["prices.csv"])            # wide: a time column, then one column per channel
    table = read_table(["stocks/"])               # one file per instrument: SPX.csv with open/high/low/close
    table = fill_missing(table, keep=["signal"])  # the stated rule for gaps (labels stay missing)

A file whose columns are open/high/low/close/volume (any case) names them after itself: `SPX.close`,
`SPX.high`, ... Several files are aligned on the union of their times. Rules, said in the output:
  - missing cells (empty, `.`, NA, NaN, null) are carried forward from the channel's last value (nothing
    from the future); the rows before every channel has had a value are dropped;
  - a label column (`--event COL:label`) is never filled: a missing label is an unknown one.
"""

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import SeqlabError

NULLS = ["", ".", "NA", "N/A", "#N/A", "NaN", "nan", "null", "NULL", "None"]
TIME_NAMES = ("date", "time", "datetime", "timestamp", "day", "dt")
OHLCV = ("open", "high", "low", "close", "adj close", "adj_close", "volume")
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq", ".tsv", ".tsv.gz")
TIME_FORMATS = ("%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y%m%d", "%m/%d/%Y %H:%M", "%d.%m.%Y %H:%M")


@dataclass
class Table:
    time_name: str
    time: np.ndarray  # (T,) datetime64 or float64, strictly increasing
    names: list[str]  # the channels
    values: np.ndarray  # (T, C) float64; NaN = missing (until fill_missing)
    notes: list[str] = field(default_factory=list)  # what the missing-value rule did, for the output

    def __len__(self) -> int:
        return len(self.time)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def time_text(self) -> list[str]:
        return [fmt(t) for t in self.time]

    def rows(self, a: int, b: int) -> "Table":
        return replace(self, time=self.time[a:b], values=self.values[a:b])


def data_files(paths: list[str]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(SUFFIXES))
            if not found:
                raise SeqlabError(f"{p} holds no table ({', '.join(SUFFIXES)}); give a CSV or Parquet file")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise SeqlabError(f"no such file or directory: {p}")
    if not files:
        raise SeqlabError("--series needs a table: give a CSV or Parquet file, or a directory of them")
    return files


def read_arrow(path: Path):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pq.read_table(path)
        delimiter = "\t" if ".tsv" in name else ","
        return pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter),
                             convert_options=pcsv.ConvertOptions(null_values=NULLS, strings_can_be_null=True))
    except (pa.ArrowInvalid, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SeqlabError(f"cannot read {path} as a table: {first}") from None


def find_time_column(columns: list[str], types: list, wanted: str, path: Path) -> str:
    import pyarrow as pa

    if wanted:
        if wanted not in columns:
            raise SeqlabError(f"{path} has no time column {wanted!r}; its columns: {preview(columns)}")
        return wanted
    for c in columns:
        if c.strip().lower() in TIME_NAMES or c.strip().lower().startswith(("date", "time")):
            return c
    if columns and (pa.types.is_temporal(types[0]) or pa.types.is_string(types[0])):
        return columns[0]
    raise SeqlabError(f"{path}: no time column found (none is named date/time and the first is numeric); "
                      f"name it with --time COLUMN")


def time_values(column, name: str, path: Path) -> np.ndarray:
    """A time column -> datetime64 (dates, timestamps, date strings) or float64 (step numbers)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise SeqlabError(f"{path}: time column {name!r} is empty at row {row + 2} (line {row + 2} of the file); "
                          f"every row needs its time")
    kind = column.type
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        column, kind = column.cast(pa.timestamp(kind.unit)), pa.timestamp(kind.unit)  # UTC instants
    if pa.types.is_temporal(kind):
        return column.to_numpy(zero_copy_only=False).astype("datetime64[ns]")
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return column.to_numpy(zero_copy_only=False).astype(np.float64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        for attempt in [lambda: column.cast(pa.timestamp("ns"))] + \
                       [lambda f=f: pc.strptime(column, format=f, unit="s") for f in TIME_FORMATS]:
            try:
                return attempt().to_numpy(zero_copy_only=False).astype("datetime64[ns]")
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
    sample = column.slice(0, 1).to_pylist()[0] if len(column) else None
    raise SeqlabError(f"{path}: cannot read time column {name!r} (e.g. {sample!r}) as times; use ISO dates "
                      f"(2020-01-31, 2020-01-31 09:30) or numbers, or name another column with --time")


def numeric_values(column, name: str, path: Path, time_text) -> np.ndarray:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind) or \
            pa.types.is_decimal(kind):
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    for row, value in enumerate(column.to_pylist()):
        try:
            if value is not None:
                float(value)
        except (TypeError, ValueError):
            raise SeqlabError(f"{path}: column {name!r} is not numeric: {value!r} at time {time_text(row)}; "
                              f"channels hold numbers (empty or '.' = missing); leave it out with "
                              f"--set series.drop={name}") from None
    raise SeqlabError(f"{path}: column {name!r} has type {kind}, not numbers; leave it out with "
                      f"--set series.drop={name}")


def check_increasing(time: np.ndarray, name: str, path: Path) -> None:
    step = np.diff(time)
    bad = np.flatnonzero(step <= np.zeros_like(step[:1]))
    if len(bad):
        i = int(bad[0])
        what = "repeats" if time[i + 1] == time[i] else "goes back in time"
        raise SeqlabError(f"{path}: time column {name!r} {what} at rows {i + 1} and {i + 2} ({fmt(time[i])}, "
                          f"{fmt(time[i + 1])}); rows must be in increasing time with no duplicates: sort the "
                          f"file by time and remove repeated rows")


def read_file(path: Path, time: str, drop: list[str]) -> Table:
    return from_arrow(read_arrow(path), time, drop, path)


def from_arrow(arrow, time: str, drop: list[str], path) -> Table:
    """An Arrow table (a file's, or rows posted to `seqlab serve`) -> Table; `path` names it in errors."""
    columns = [str(c) for c in arrow.column_names]
    time_name = find_time_column(columns, [arrow.schema.field(i).type for i in range(len(columns))], time, path)
    t = time_values(arrow.column(time_name), time_name, path)
    check_increasing(t, time_name, path)
    channels = [c for c in columns if c != time_name and c not in drop]
    if not channels:
        raise SeqlabError(f"{path} has no channel besides its time column {time_name!r}")
    text = lambda row: fmt(t[row])
    values = np.column_stack([numeric_values(arrow.column(c), c, path, text) for c in channels])
    if all(c.strip().lower() in OHLCV for c in channels):  # one instrument's bars: name them after the file
        stem = Path(str(path)).name.split(".")[0]
        channels = [f"{stem}.{c.strip().lower().replace(' ', '_')}" for c in channels]
    return Table(time_name, t, channels, values)


def align(tables: list[Table], files: list[Path]) -> Table:
    """Several files -> one table on the union of their times (cells a file lacks are missing)."""
    if len(tables) == 1:
        return tables[0]
    kinds = {np.issubdtype(t.time.dtype, np.datetime64) for t in tables}
    if len(kinds) > 1:
        raise SeqlabError("the files' time columns mix dates and numbers; give them all dates or all numbers")
    seen = {}
    for table, path in zip(tables, files):
        for name in table.names:
            if name in seen:
                raise SeqlabError(f"column {name!r} is in both {seen[name]} and {path}; rename one, or leave it "
                                  f"out with --set series.drop={name}")
            seen[name] = path
    time = np.unique(np.concatenate([t.time for t in tables]))
    values = np.full((len(time), len(seen)), np.nan)
    col = 0
    for table in tables:
        values[np.searchsorted(time, table.time), col: col + len(table.names)] = table.values
        col += len(table.names)
    return Table(tables[0].time_name, time, list(seen), values)


def read_table(paths: list[str], time: str = "", drop: list[str] = ()) -> Table:
    files = data_files(paths)
    return align([read_file(f, time, list(drop)) for f in files], files)


def fill_missing(table: Table, keep: list[str] = (), constant_ok: bool = False) -> Table:
    """Carry each channel's last value forward; drop the rows before every channel (but `keep`) has started.

    Columns in `keep` (labels) keep their gaps. Returns a new table whose notes say what was done. A constant
    channel is an error unless constant_ok.
    """
    values = table.values.copy()
    filled = [j for j, name in enumerate(table.names) if name not in keep]
    missing = np.isnan(values[:, filled])
    for k, j in enumerate(filled):
        col = values[:, j]
        seen = np.flatnonzero(~missing[:, k])
        if not len(seen):
            raise SeqlabError(f"column {table.names[j]!r} has no value at all; leave it out with "
                              f"--set series.drop={table.names[j]}")
        last = np.maximum.accumulate(np.where(missing[:, k], 0, np.arange(len(col))))
        values[:, j] = np.where(np.arange(len(col)) < seen[0], np.nan, col[last])
    starts = [int(np.flatnonzero(~missing[:, k])[0]) for k in range(len(filled))]
    first = max(starts, default=0)
    n_filled = int(missing[first:].sum())
    notes = [f"missing values: {n_filled:,} of {missing[first:].size:,} cells carried forward from the channel's "
             f"last value ({100 * n_filled / max(1, missing[first:].size):.2f}%)"]
    if first:
        late = table.names[filled[int(np.argmax(starts))]]
        notes.append(f"dropped the first {first:,} rows, before {late!r} has its first value (leave it out with "
                     f"--set series.drop={late} to keep them)")
    out = Table(table.time_name, table.time[first:], table.names, values[first:], table.notes + notes)
    if not constant_ok:
        check_constant(out, [table.names[j] for j in filled])
    return out


def check_constant(table: Table, names: list[str]) -> None:
    for name in names:
        col = table.column(name)
        if len(col) and np.nanmin(col) == np.nanmax(col):
            raise SeqlabError(f"channel {name!r} is constant (every value is {col[0]:g}): it tells the model "
                              f"nothing; leave it out with --set series.drop={name}")


def fmt(t) -> str:
    if isinstance(t, np.datetime64):
        text = str(np.datetime_as_string(t, unit="s"))
        return text[:10] if text.endswith("T00:00:00") else text.replace("T", " ")
    return f"{t:g}" if isinstance(t, (float, np.floating)) and math.isfinite(t) else str(t)


def preview(names: list[str], n: int = 12) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")
