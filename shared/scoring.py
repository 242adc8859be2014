"""Scoring a job's input in slices: the input is read as it arrives and cut into chunks of
whole records (`shared.records`); each chunk is scored by the service's scorer (a function
over a DataFrame) and its output staged as a block of its output blob, so memory stays flat.

A slice scores from the job's checkpoint (the input offset, the header row, rows scored and
how many blocks each output has staged) until the input ends or its time is up. Block ids
follow from the job, the output and the block's number, so a resumed slice re-stages at
most the chunks after the checkpoint and the committed blob is the same as an uninterrupted
run's. What is written to the job row, and when, is the runner's (`shared.runner`).
"""
from __future__ import annotations

import base64
import importlib
import io
import json
import time
from typing import Protocol

import pandas as pd

from shared import bes, layout, records, schema, services
from shared.errors import InvalidRequest
from shared.settings import get_settings
from shared.storage import BlobFile, account_of, blob_endpoint, ensure_container

CSV = "text/csv"
MAX_HEADER_BYTES = 32 * 1024  # kept in the checkpoint; a table property holds at most 64 KiB


class JobFailed(Exception):
    """The job cannot succeed; the message is its Details."""


def block_id(job_id: str, output_index: int, number: int) -> str:
    """The id of an output's block: the same for the same chunk in every attempt, 43 bytes
    before encoding and 60 after, whatever the pool's name (Azure takes at most 64)."""
    return base64.b64encode(f"{number:08d}-{output_index:03d}-{layout.job_stamp(job_id)}".encode()).decode()


class Output:
    """One output blob: its staged blocks so far. A job whose output is one chunk writes it
    in one request at commit instead (as atomic: a blob is replaced whole)."""

    def __init__(self, blob: BlobFile, job_id: str, index: int, staged: int):
        self.blob = blob
        self.job_id = job_id
        self.index = index
        self.staged = staged
        self.held: bytes | None = None

    def write(self, data: bytes, may_hold: bool) -> None:
        if not data:
            return
        if may_hold and self.staged == 0 and self.held is None:
            self.held = data
            return
        self.flush()
        self._stage(data)

    def flush(self) -> None:
        """Stage what is held, so that the checkpoint covers it."""
        if self.held is not None:
            held, self.held = self.held, None
            self._stage(held)

    def _stage(self, data: bytes) -> None:
        self.blob.stage_block(block_id(self.job_id, self.index, self.staged), data)
        self.staged += 1

    def commit(self) -> None:
        if self.staged == 0:
            self.blob.upload(self.held or b"", CSV)
        else:
            self.flush()
            self.blob.commit_blocks([block_id(self.job_id, self.index, n) for n in range(self.staged)], CSV)


def load_scorer(reference: str):
    module_name, function_name = reference.split(":")
    if not services.scorer_allowed(module_name, get_settings().scorer_packages):
        raise JobFailed(f"the service's scorer {module_name} is no longer in SCORER_PACKAGES; the operator must "
                        "register an allowed one")
    return getattr(importlib.import_module(module_name), function_name)


def frames_by_output(result, output_names: list[str]) -> dict[str, pd.DataFrame]:
    if isinstance(result, pd.DataFrame):
        return {name: result for name in output_names}
    if isinstance(result, dict) and all(isinstance(v, pd.DataFrame) for v in result.values()):
        missing = [n for n in output_names if n not in result]
        if missing:
            raise JobFailed(f"the scorer returned no frame for output(s) {', '.join(missing)}")
        return result
    raise JobFailed(f"the scorer must return a DataFrame or a dict of DataFrames by output name, "
                    f"not {type(result).__name__}")


def parse_chunk(header: bytes, data: bytes, first_row: int) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(header + data))
    except pd.errors.EmptyDataError:
        raise JobFailed("the input blob is empty: a CSV with a header row is needed") from None
    except pd.errors.ParserError as error:
        raise JobFailed(f"the input blob is not a readable CSV: {schema.parser_problem(str(error), first_row)}") \
            from None
    except UnicodeDecodeError:
        raise JobFailed(f"the input blob is not UTF-8 text (in rows from {first_row} on)") from None


def header_columns(header: bytes) -> list[str]:
    try:
        return [str(name) for name in pd.read_csv(io.BytesIO(header), nrows=0).columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise JobFailed("the input blob's header row cannot be read as CSV") from None


class Progress(Protocol):
    """What a slice tells its runner while it scores."""

    def check(self) -> None:
        """Raise if the run was lost meanwhile (cancelled, timed out, taken over)."""

    def note(self, **progress) -> None:
        """How far it has got (shown by the next heartbeat; never a checkpoint)."""


class Slice:
    """One invocation's share of a run: score from the job's checkpoint until the input ends
    or the slice's time is up (`deadline`, on the monotonic clock)."""

    def __init__(self, job: dict, progress: Progress, request: bes.JobRequest, scorer, chunk_rows: int,
                 deadline: float):
        self.progress = progress
        self.request = request
        self.scorer = scorer
        try:
            self.columns = schema.declared(scorer)
        except ValueError as error:
            raise JobFailed(f"the service's scorer declares its input wrongly: {error}") from None
        self.chunk_rows = chunk_rows
        self.deadline = deadline
        staged = json.loads(job.get("OutputBlocks") or "{}")
        self.position = {key: job.get(key) or 0 for key in ("InputOffset", "RowsScored", "Chunks")}
        self.size = job.get("InputBytes") or 0
        self.header = job.get("InputHeader") or b""
        self.outputs = {}
        for index, (name, location) in enumerate(request.outputs.items()):
            account = account_of(location)
            if not location.uses_sas and not staged:
                ensure_container(account, location.container)
            self.outputs[name] = Output(BlobFile(account, location.container, location.blob),
                                         job["JobId"], index, staged.get(name, 0))

    def needs_rescoring(self) -> bool:
        """A runner that died while committing an output it held in memory (a one-chunk
        output, written in one request) left nothing staged to commit: score that chunk again."""
        return (self.position["Chunks"] or 0) > 0 and any(o.staged == 0 for o in self.outputs.values())

    def restart(self) -> None:
        self.position = {"InputOffset": 0, "RowsScored": 0, "Chunks": 0}
        for output in self.outputs.values():
            output.staged = 0

    def score(self, to_the_end: bool = False) -> bool:
        """Score on from the checkpoint; True when the whole input is scored (always, with
        `to_the_end`), False when the slice's time ran out first."""
        source = self.request.input
        offset = self.position["InputOffset"]
        opened = BlobFile(account_of(source), source.container, source.blob).read_from(offset)
        if opened is None:
            raise JobFailed(f"input blob {source.container}/{source.blob} does not exist")
        size, blocks = opened
        header = self.header
        if offset == 0:
            if size == 0:
                raise JobFailed("the input blob is empty: a CSV with a header row is needed")
            try:
                header, blocks = records.split_header(blocks, MAX_HEADER_BYTES)
            except ValueError as error:
                raise JobFailed(f"the input blob's header row cannot be read: {error}") from None
            offset = len(header)
            self.header = header
            if self.columns:
                problem = schema.header_problem(header_columns(header), self.columns)
                if problem:
                    raise JobFailed(problem)
        self.size = size
        rows, chunk_index = self.position["RowsScored"], self.position["Chunks"]
        self.progress.note(InputBytes=size)
        for chunk in records.chunks(blocks, offset, self.chunk_rows):
            self.progress.check()
            frame = parse_chunk(header, chunk.data, rows + 1)
            problem = schema.value_problem(frame, self.columns, rows + 1) if self.columns else None
            if problem:
                raise JobFailed(f"the input does not match the service's columns: {problem}")
            try:
                result = self.scorer(frame, dict(self.request.global_parameters))
            except JobFailed:
                raise
            except Exception as error:
                raise JobFailed(f"the scorer failed on rows {rows + 1}-{rows + len(frame)}: "
                                f"{type(error).__name__}: {error}") from None
            for name, output in frames_by_output(result, list(self.outputs)).items():
                if name in self.outputs:
                    data = output.to_csv(index=False, header=chunk_index == 0).encode("utf-8")
                    self.outputs[name].write(data, may_hold=chunk_index == 0)
            rows += len(frame)
            chunk_index += 1
            self.position = {"InputOffset": chunk.end, "RowsScored": rows, "Chunks": chunk_index}
            self.progress.note(ProgressRows=rows, ProgressOffset=chunk.end)
            if not to_the_end and not chunk.last and time.monotonic() >= self.deadline:
                return False
        return True

    def flush(self) -> None:
        """Stage what is held, so that a checkpoint covers it."""
        for output in self.outputs.values():
            output.flush()

    def checkpoint(self) -> dict:
        """What is done: the input up to an offset, scored into the blocks staged so far."""
        return {**self.position, "InputBytes": self.size,
                "OutputBlocks": json.dumps({name: output.staged for name, output in self.outputs.items()})}

    def ready_to_commit(self) -> None:
        """Stage every output's held data but a one-chunk output's (written whole at commit)."""
        for output in self.outputs.values():
            if output.held is None:
                output.flush()

    def commit(self) -> None:
        """Make the outputs visible (after the fence)."""
        for output in self.outputs.values():
            output.commit()

    def results(self) -> dict:
        """Where each output was written, as the job's status shows it."""
        return {name: bes.public_location(location, blob_endpoint(account_of(location)))
                for name, location in self.request.outputs.items()}


def stored_request(job: dict) -> bes.JobRequest:
    """The job's request as stored at submit, checked again by today's rules."""
    try:
        return bes.request_from_stored(job)
    except InvalidRequest as refused:
        raise JobFailed(f"the job's request is not valid: {refused.message}") from None
