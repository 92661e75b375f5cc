"""The main command's terminal: a few lines per stage, progress bars on a terminal, everything else to a log file.

    Terminal       what reaches the person: plain lines, and tqdm bars when stdout is a terminal (in CI and
                   pipes a bar is at most a few plain lines)
    capture_output the process's stdout/stderr (file descriptors 1 and 2: Dagster's own output, dbt, the
                   training subprocess, library warnings) redirected into the log file while the stages run
    event_loggers  the Dagster loggers of the main command's runs: the whole event log (DEBUG) to the log file,
                   and `Progress`, which turns events and known progress messages into bars and step lines
    Progress       step start / end / failure, per-step timings (grouped into stages), bars for raw loading
                   (files), dbt (models and tests done / total), the oracle (tasks), training (steps per stage) and
                   evaluation (episodes per partition)
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, TextIO

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"  # Dagster's console format
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
ERROR_LINES = 3  # lines of a failing step's error shown on the terminal


def new_log_path(folder: Path) -> Path:
    """A new, empty `<folder>/main-<local time>.log`."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"main-{stamp}.log", 1
    while path.exists():
        n += 1
        path = folder / f"main-{stamp}-{n}.log"
    path.touch()
    return path


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# ---------------------------------------------------------------------------------------------- terminal
class _PlainBar:
    """A bar where stdout is not a terminal: nothing while it runs, or with `milestones` a line at 25, 50, 75
    and 100%."""

    def __init__(self, terminal: "Terminal", desc: str, total: int | None, unit: str, milestones: bool):
        self.terminal, self.desc, self.total, self.unit, self.milestones = terminal, desc, total, unit, milestones
        self.n, self.postfix, self._next = 0, "", 0.25

    def update_to(self, n: int, total: int | None = None, postfix: str = "") -> None:
        self.n = n
        self.total = total if total is not None else self.total
        self.postfix = postfix or self.postfix
        if self.milestones and self.total and self._next <= 1 and self.n >= self._next * self.total:
            self.terminal.line(f"    {self.desc}: {self.n}/{self.total} {self.unit}"
                               + (f" ({self.postfix})" if self.postfix else ""))
            while self._next <= 1 and self.n >= self._next * self.total:
                self._next += 0.25

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


class _TqdmBar:
    def __init__(self, stream: TextIO, desc: str, total: int | None, unit: str):
        from tqdm import tqdm

        fmt = ("  {desc} {bar:24} {n_fmt}/{total_fmt} " + unit + " [{elapsed}<{remaining}]{postfix}" if total
               else "  {desc} " + (unit + " " if unit else "") + "[{elapsed}]{postfix}")
        try:
            known = os.get_terminal_size(stream.fileno()).columns > 0
        except (OSError, ValueError, AttributeError):
            known = False
        # a terminal that reports no width (a pty nobody sized) gets a fixed one, else tqdm draws nothing
        self.bar = tqdm(total=total, desc=desc, file=stream, leave=False, dynamic_ncols=known,
                        ncols=None if known else 100, bar_format=fmt, mininterval=0.2)

    @property
    def n(self) -> int:
        return self.bar.n

    def update_to(self, n: int, total: int | None = None, postfix: str = "") -> None:
        if total is not None and total != self.bar.total:
            self.bar.total = total
        self.bar.n = n
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def refresh(self) -> None:
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class Terminal:
    """Lines and progress bars for a person. Bars only when the stream is a terminal (and not `plain`)."""

    def __init__(self, stream: TextIO, tty: bool | None = None):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.lines = 0  # lines written (bars that redraw in place are not lines)
        self._lock = threading.RLock()
        self._bars: dict[str, _TqdmBar | _PlainBar] = {}
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def line(self, text: str = "") -> None:
        with self._lock:
            for part in text.split("\n"):
                if self._bars and self.tty:
                    from tqdm import tqdm

                    tqdm.write(part, file=self.stream)
                else:
                    self.stream.write(part + "\n")
                self.lines += 1
            self.stream.flush()

    def bar(self, key: str, desc: str, total: int | None, unit: str = "", milestones: bool = False) -> None:
        with self._lock:
            self.close_bar(key)
            self._bars[key] = (_TqdmBar(self.stream, desc, total, unit) if self.tty
                               else _PlainBar(self, desc, total, unit, milestones))
            if self.tty:
                self._start_ticker()

    def has_bar(self, key: str) -> bool:
        return key in self._bars

    def update(self, key: str, n: int, total: int | None = None, postfix: str = "") -> None:
        with self._lock:
            if key in self._bars:
                self._bars[key].update_to(n, total, postfix)

    def advance(self, key: str, by: int = 1) -> None:
        with self._lock:
            if key in self._bars:
                self._bars[key].update_to(self._bars[key].n + by)

    def close_bar(self, key: str) -> None:
        with self._lock:
            bar = self._bars.pop(key, None)
            if bar is not None:
                bar.close()

    def close_bars(self, prefix: str = "") -> None:
        with self._lock:
            for key in [k for k in self._bars if k.startswith(prefix)]:
                self.close_bar(key)

    def _start_ticker(self) -> None:
        """Redraw the bars every second so that elapsed times move while a step is silent."""
        if self._ticker is not None:
            return

        def tick() -> None:
            while not self._stop.wait(1.0):
                with self._lock:
                    for bar in self._bars.values():
                        bar.refresh()

        self._ticker = threading.Thread(target=tick, name="finqa-rl-terminal", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self.close_bars()
        self._stop.set()
        self.stream.flush()


def terminal_stream() -> TextIO:
    """A stream on a copy of the current stdout, still the terminal after `capture_output` redirects stdout."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a stdout without a file descriptor (captured in-process)
        return sys.stdout
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=encoding, errors="replace")


@contextmanager
def capture_output(log_path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (and its children's) to the end of `log_path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


# ---------------------------------------------------------------------------------------------- progress
# progress messages the assets and the training entry point log (context.log.info / Pipes log lines)
RAW_FILES = re.compile(r"^(?P<source>[\w-]+): (?P<total>\d+) input file\(s\)")
RAW_FILE = re.compile(r"^(?P<source>[\w-]+): file (?P<n>\d+)/(?P<total>\d+)")
RAW_READING = re.compile(r"^(?P<source>[\w-]+): reading ")
ORACLE = re.compile(r"^oracle: (?P<n>\d+)/(?P<total>\d+) tasks, (?P<failures>\d+) failures")
TRAINING_STEP = re.compile(r"^\[(?P<stage>\w+) (?P<step>\d+)\](?P<rest>.*)$")
EPISODES = re.compile(r"^(?P<what>.+ on \S+): (?P<n>\d+)/(?P<total>\d+) episodes$")
STEP_METRICS = ("loss", "reward", "pass_rate")


@dataclass
class StepTiming:
    key: str
    label: str
    stage: str
    started: float
    ended: float | None = None
    status: str = "running"  # running, ok, failed, skipped
    error: str = ""
    materialized: int = 0  # assets materialised + checks evaluated

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


@dataclass
class StepInfo:
    """What the terminal says about a step: a label, its stage, the assets and checks it may materialise."""

    label: str
    stage: str
    keys: frozenset = frozenset()
    checks: frozenset = frozenset()

    def outputs(self, selection) -> int:
        """Assets + checks of this step that a run of `selection` materialises / evaluates; 0 when it
        materialises fewer than two assets (no bar of its own)."""
        selected = set(selection)
        assets = len(self.keys & selected)
        return assets + sum(1 for c in self.checks if c.asset_key in selected) if assets > 1 else 0


def step_infos(defs, stage_of_group: Callable[[str | None], str]) -> dict[str, StepInfo]:
    """Step key (op name) -> label and stage for every asset / check step of the definitions."""
    graph = defs.resolve_asset_graph()
    infos: dict[str, StepInfo] = {}
    for assets_def in graph.assets_defs:
        keys = sorted(assets_def.keys, key=lambda k: k.to_user_string())
        checks = sorted(assets_def.check_keys, key=lambda c: c.to_user_string())
        groups = sorted({graph.get(k).group_name or "" for k in keys})  # dbt: curation_staging, curation_marts, ...
        stage = stage_of_group(os.path.commonprefix(groups).rstrip("_") or None if groups else None)
        if len(keys) == 1:
            label = keys[0].to_user_string()
        elif keys:
            label = f"{assets_def.node_def.name} ({len(keys)} assets, {len(checks)} checks)"
        else:
            label = "check " + ", ".join(f"{c.asset_key.to_user_string()}:{c.name}" for c in checks)
        infos[assets_def.node_def.name] = StepInfo(label, stage, frozenset(keys), frozenset(checks))
    return infos


def error_text(event, lines: int = ERROR_LINES) -> str:
    """The first lines of a failed step's error: the Failure's description, else the user code's exception."""
    data = event.step_failure_data
    text = ""
    if data.user_failure_data is not None and data.user_failure_data.description:
        text = data.user_failure_data.description
    elif data.error is not None:
        error = data.error
        while error.cause is not None and error.cls_name in ("DagsterExecutionStepExecutionError",
                                                              "DagsterUserCodeExecutionError"):
            error = error.cause
        text = re.sub(r"^(?:\w+\.)+(\w+(?:Error|Exception|Failure)\b)", r"\1", error.message.strip())
    kept = [line.rstrip()[:240] for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[:lines]) + (" ..." if len(kept) > lines else "")


class Progress:
    """Turns the Dagster events of the main command's runs into step lines, bars and stage timings."""

    def __init__(self, terminal: Terminal, steps: dict[str, StepInfo], step_totals: dict[str, int] | None = None,
                 quiet: bool = False):
        self.terminal = terminal
        self.steps = steps
        self.step_totals = dict(step_totals or {})  # training stage -> steps (from the training config)
        self.quiet = quiet  # only failures as lines (the evaluation prints its own lines)
        self.timings: list[StepTiming] = []
        self.outputs: dict[str, int] = {}  # step -> assets + checks it will report (multi-asset steps: a bar)
        self.failed_checks: list[str] = []
        self._running: dict[tuple[str, str], StepTiming] = {}
        self._lock = threading.RLock()

    def expect(self, selection) -> None:
        """The assets a run is about to materialise: steps with many of them (dbt) get a bar."""
        self.outputs = {step: n for step, info in self.steps.items() if (n := info.outputs(selection)) > 1}

    # -- what the summary reads
    def stage_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self.timings:
            out[t.stage] = out.get(t.stage, 0.0) + t.seconds
        return out

    def failures(self) -> list[StepTiming]:
        return [t for t in self.timings if t.status == "failed"]

    # -- the Dagster logger's sink
    def handle(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None)
        if not isinstance(meta, dict):
            return
        try:
            with self._lock:
                self._handle(meta)
        except Exception as e:  # never let the terminal break a run
            logging.getLogger(__name__).debug("progress: %r", e)

    def _handle(self, meta: dict) -> None:
        event = meta.get("dagster_event")
        run = meta.get("run_id") or ""
        step = meta.get("step_key") or ""
        if event is None:
            self._message(run, step, str(meta.get("orig_message") or ""))
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            info = self.steps.get(step, StepInfo(step, "other"))
            timing = StepTiming(step, info.label, info.stage, time.monotonic())
            self._running[(run, step)] = timing
            self.timings.append(timing)
            if step in self.outputs:
                self.terminal.bar(f"{run}/{step}", info.label.split(" (")[0], self.outputs[step], "assets+checks")
            elif self.terminal.tty:
                self.terminal.bar(f"{run}/{step}", info.label, None)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            timing = self._running.pop((run, step), None)
            self.terminal.close_bars(f"{run}/{step}")
            if timing is None:
                return
            timing.ended = time.monotonic()
            timing.status = "ok" if kind == "STEP_SUCCESS" else "failed"
            if timing.status == "failed":
                timing.error = error_text(event)
                self.terminal.line(f"  {timing.stage:<10} {timing.label} FAILED after {duration(timing.seconds)}:")
                for line in timing.error.splitlines():
                    self.terminal.line(f"      {line}")
            elif not self.quiet:
                self.terminal.line(f"  {timing.stage:<10} {timing.label} ok in {duration(timing.seconds)}")
        elif kind == "STEP_SKIPPED":
            info = self.steps.get(step, StepInfo(step, "other"))
            self.timings.append(StepTiming(step, info.label, info.stage, time.monotonic(), time.monotonic(), "skipped"))
            self.terminal.line(f"  {info.stage:<10} {info.label} skipped (an upstream step or blocking check failed)")
        elif kind in ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION"):
            timing = self._running.get((run, step))
            if timing is not None:
                timing.materialized += 1
                if step in self.outputs:
                    self.terminal.update(f"{run}/{step}", timing.materialized)
        if kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if data is not None and not data.passed and getattr(data.severity, "value", "") == "ERROR":
                name = f"{data.asset_key.to_user_string()}:{data.check_name}"
                self.failed_checks.append(name)
                why = f": {data.description}" if data.description else ""
                self.terminal.line(f"  {'check':<10} {name} FAILED{why}")

    def _message(self, run: str, step: str, message: str) -> None:
        prefix = f"{run}/{step}"
        if m := RAW_FILES.match(message):
            self.terminal.close_bar(prefix)  # the step's indeterminate bar
            self.terminal.bar(f"{prefix}/files", f"{m['source']} files", int(m["total"]), "files")
        elif m := RAW_FILE.match(message):
            self.terminal.update(f"{prefix}/files", int(m["n"]), int(m["total"]))
        elif RAW_READING.match(message):
            self.terminal.advance(f"{prefix}/files")
        elif m := ORACLE.match(message):
            key = f"{prefix}/oracle"
            if not self.terminal.has_bar(key):
                self.terminal.close_bar(prefix)
                self.terminal.bar(key, "oracle", int(m["total"]), "tasks")
            self.terminal.update(key, int(m["n"]), int(m["total"]), f"{m['failures']} failures")
        elif m := TRAINING_STEP.match(message):
            stage, n = m["stage"], int(m["step"])
            key = f"{prefix}/train/{stage}"
            if not self.terminal.has_bar(key):
                self.terminal.close_bars(f"{prefix}/train/")
                self.terminal.close_bar(prefix)  # the step's indeterminate bar
                self.terminal.bar(key, f"training {stage}", self.step_totals.get(stage), "steps", milestones=True)
            metrics = dict(re.findall(r"(\w+)=(\S+)", m["rest"]))
            self.terminal.update(key, n, postfix=" ".join(f"{k}={metrics[k]}" for k in STEP_METRICS if k in metrics))
        elif m := EPISODES.match(message):
            key = f"{prefix}/episodes"
            if not self.terminal.has_bar(key):
                self.terminal.close_bar(prefix)
                self.terminal.bar(key, m["what"], int(m["total"]), "episodes")
            self.terminal.update(key, int(m["n"]), int(m["total"]))


# ---------------------------------------------------------------------------------------------- loggers
class _ProgressHandler(logging.Handler):
    def __init__(self, progress: Progress):
        super().__init__(level=logging.DEBUG)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.handle(record)


def file_handler(log_path: Path) -> logging.Handler:
    handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    handler.setLevel(logging.DEBUG)
    return handler


def event_loggers(log_handler: logging.Handler, progress: Progress | None, console: bool = False) -> dict:
    """Dagster logger definitions: the whole event log through `log_handler` (DEBUG), events to `progress`,
    and, with `console`, Dagster's own colored console logger (the event log on the terminal, as `dagster`
    prints it by default)."""
    import dagster as dg

    def make(description: str, handler: logging.Handler) -> dg.LoggerDefinition:
        @dg.logger(description=f"finqa-rl main command: {description}")
        def _logger(_init_context) -> logging.Logger:
            logger = logging.Logger("dagster", level=logging.DEBUG)  # named as in Dagster's console format
            logger.addHandler(handler)
            return logger

        return _logger

    loggers = {"event_log_file": make("the whole event log to the log file", log_handler)}
    if progress is not None:
        loggers["progress"] = make("progress bars and step lines", _ProgressHandler(progress))
    if console:
        loggers["console"] = dg.colored_console_logger
    return loggers


def loggers_run_config(loggers: dict) -> dict:
    """The run config that switches the loggers on: Dagster starts only the loggers a run's config names
    (a job's logger definitions alone leave its default console logger in place)."""
    return {"loggers": {name: {"config": {"log_level": "DEBUG"}} if name == "console" else {} for name in loggers}}
